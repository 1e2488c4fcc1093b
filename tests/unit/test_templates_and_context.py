"""Templates, the step context's rules, and the processor's pure decisions."""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transflow import (
    DuplicateTemplateError,
    JobProcessor,
    OutputFile,
    OutputPathError,
    ProcessingJob,
    ProgressQueue,
    ProgressType,
    ReceivedMessage,
    S3ObjectRef,
    StepContext,
    StepUsageError,
    TemplateDefinitionError,
    TemplateNotFoundError,
    TemplateRegistry,
    ToolFailedError,
    ToolNotFoundError,
    ToolTimeoutError,
)
from transflow._aws.lambda_batch import BatchGate
from transflow.processing.attempt import failure_code
from transflow.processing.context import OutputLocation, output_key
from transflow.processing.external import run_tool
from transflow.processing.progress import SEQS_PER_MS, first_seq, should_flush
from transflow.processing.progress import progress_dedup_id as dedup_id
from transflow.processing.status import AssemblyStatus, ResultRecord, UploadRecord
from transflow.processing.storage import local_input_name

PREFIX = "outputs/main/users/u1/up-1/"


# -- templates ----------------------------------------------------------------------------


def test_steps_run_in_registration_order_and_ids_are_unique() -> None:
    registry = TemplateRegistry()
    audio = registry.template("audio", output_bucket="out")

    @audio.step("probe")
    def probe(ctx: StepContext) -> None: ...

    @audio.step("transcode")
    def transcode(ctx: StepContext) -> None: ...

    assert [s.name for s in registry.get("audio").steps] == ["probe", "transcode"]
    assert audio.steps[0].func is probe
    with pytest.raises(DuplicateTemplateError, match="'audio' is already registered"):
        registry.template("audio")
    with pytest.raises(TemplateDefinitionError, match="already has a step 'probe'"):
        audio.step("probe")
    registry.template("video")
    with pytest.raises(TemplateNotFoundError) as missing:
        registry.get("images")
    assert missing.value.known == ("audio", "video")
    assert "known: 'audio', 'video'" in str(missing.value)
    assert "audio" in registry
    assert len(registry) == 2


@pytest.mark.parametrize("name", ["", " x", "a/b", "-lead", "x" * 65, "sp ace"])
def test_bad_step_names_are_refused(name: str) -> None:
    template = TemplateRegistry().template("t")
    with pytest.raises(TemplateDefinitionError, match="is not valid"):
        template.step(name)


def test_webhook_settings_are_checked() -> None:
    registry = TemplateRegistry()
    with pytest.raises(TemplateDefinitionError, match="absolute http"):
        registry.template("a", webhook_url="ftp://x/y")
    with pytest.raises(TemplateDefinitionError, match="no webhook_url"):
        registry.template("b", webhook_secret="s")
    with pytest.raises(TemplateDefinitionError, match="non-empty"):
        registry.template(" ")
    url = "https://example.test/hook"
    assert registry.template("c", webhook_url=url, webhook_secret="s").webhook_url == url


def test_a_webhook_without_a_secret_needs_unsigned_on_purpose() -> None:
    registry = TemplateRegistry()
    url = "https://example.test/hook"
    with pytest.raises(TemplateDefinitionError, match=r"has no webhook_secret.*unsigned=True"):
        registry.template("a", webhook_url=url)
    with pytest.raises(TemplateDefinitionError, match="non-empty string"):
        registry.template("b", webhook_url=url, webhook_secret="")
    with pytest.raises(TemplateDefinitionError, match="choose one"):
        registry.template("c", webhook_url=url, webhook_secret="s", unsigned=True)
    with pytest.raises(TemplateDefinitionError, match="no webhook_url"):
        registry.template("d", unsigned=True)
    assert "a" not in registry
    template = registry.template("e", webhook_url=url, unsigned=True)
    assert (template.webhook_url, template.webhook_secret) == (url, None)


# -- output names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "/etc/passwd", "../x", "a/../../b", "a//b", "./a", "a\\..\\b", "status.json", "a\x00b"],
)
def test_output_names_that_escape_are_refused(name: str) -> None:
    with pytest.raises(OutputPathError):
        output_key(PREFIX, name)


def test_output_names_inside_are_kept() -> None:
    assert output_key(PREFIX, "audio/preview.mp3") == PREFIX + "audio/preview.mp3"
    assert output_key(PREFIX, "a..b.txt") == PREFIX + "a..b.txt"
    assert output_key(PREFIX, "sub/status.json") == PREFIX + "sub/status.json"


@given(st.text(max_size=40))
def test_no_output_name_leaves_the_prefix(name: str) -> None:
    try:
        key = output_key(PREFIX, name)
    except OutputPathError:
        return
    assert key.startswith(PREFIX)
    rest = key[len(PREFIX) :]
    assert rest != "status.json"
    assert ".." not in rest.split("/")
    assert "" not in rest.split("/")


@given(st.lists(st.text(min_size=0, max_size=20), min_size=1, max_size=8))
def test_local_input_names_are_unique_and_safe(keys: list[str]) -> None:
    taken: set[str] = set()
    names = [local_input_name(key, taken) for key in keys]
    assert len({n.lower() for n in names}) == len(names)
    for name in names:
        assert name
        assert "/" not in name
        assert not name.startswith(".")


def test_local_input_names_keep_the_extension() -> None:
    taken: set[str] = set()
    assert [local_input_name(k, taken) for k in ["x/a.wav", "y/a.wav", "z/A.wav", "b"]] == [
        "a.wav",
        "a-1.wav",
        "A-2.wav",
        "b",
    ]


# -- the step context ---------------------------------------------------------------------


@attrs.define
class _Runtime:
    """Records what a context asked for; pure unit stand-in, no AWS involved."""

    events: list[tuple[ProgressType, dict[str, Any]]] = attrs.field(factory=list)
    stored: list[tuple[str, str, str]] = attrs.field(factory=list)
    outputs: list[OutputFile] = attrs.field(factory=list)
    left: float = math.inf

    def emit(self, type: ProgressType, fields: Mapping[str, Any]) -> None:
        self.events.append((type, dict(fields)))

    def store_output(self, local_path: Path, bucket: str, key: str, content_type: str) -> str:
        self.stored.append((bucket, key, content_type))
        return "etag"

    def record_output(self, output: OutputFile) -> None:
        self.outputs.append(output)

    def remaining_time(self) -> float:
        return self.left

    def recorded_outputs(self) -> Mapping[str, Sequence[OutputFile]]:
        return {"encode": self.outputs}

    def fetch_output(self, output: OutputFile, local_path: Path) -> None:
        local_path.write_bytes(b"fetched " + output.key.encode())


def _context(tmp_path: Path, runtime: _Runtime) -> StepContext:
    job = ProcessingJob(
        upload_id="up-1",
        template_id="t",
        objects=[S3ObjectRef("b", "k")],
        branch="main",
        fields={"slug": "intro"},
    )
    return StepContext(job, "t", "encode", (), tmp_path, OutputLocation("out", PREFIX), 1, runtime)


def test_context_uploads_publishes_and_reports(tmp_path: Path) -> None:
    runtime = _Runtime()
    ctx = _context(tmp_path, runtime)
    target = ctx.path("clip.mp3")
    target.write_bytes(b"ID3")
    result = ctx.upload_result(target, "audio/clip.mp3")
    assert result == OutputFile(
        "encode", "audio/clip.mp3", "out", PREFIX + "audio/clip.mp3", 3, "audio/mpeg", "etag"
    )
    assert runtime.stored == [("out", PREFIX + "audio/clip.mp3", "audio/mpeg")]
    ctx.progress(42.5, "half way")
    ctx.publish("progress", percent=50, frames=1200)
    assert runtime.events == [
        (
            ProgressType.OUTPUT,
            {
                "step": "encode",
                "name": "audio/clip.mp3",
                "bucket": "out",
                "key": PREFIX + "audio/clip.mp3",
            },
        ),
        (ProgressType.PROGRESS, {"step": "encode", "percent": 42.5, "message": "half way"}),
        (ProgressType.PROGRESS, {"step": "encode", "percent": 50, "extra": {"frames": 1200}}),
    ]
    assert ctx.fields == {"slug": "intro"}
    assert ctx.remaining_time() == math.inf


@pytest.mark.parametrize("percent", [-1, 101, math.nan, True, "50"])
def test_progress_out_of_range_is_refused(tmp_path: Path, percent: Any) -> None:
    with pytest.raises(StepUsageError, match="0 to 100"):
        _context(tmp_path, _Runtime()).progress(percent)


def test_publish_refuses_the_processors_events_and_non_json(tmp_path: Path) -> None:
    ctx = _context(tmp_path, _Runtime())
    for kind in ("done", "error", "start", "step:done", "bogus"):
        with pytest.raises(StepUsageError, match="may publish"):
            ctx.publish(kind)
    with pytest.raises(StepUsageError, match="must be JSON"):
        ctx.publish("progress", blob=object())
    with pytest.raises(StepUsageError, match="is not a file"):
        ctx.upload_result(tmp_path / "missing", "x")


def test_run_is_cut_to_the_lambda_time_left(tmp_path: Path) -> None:
    runtime = _Runtime(left=4.0)  # below the reserve: nothing may start
    with pytest.raises(ToolTimeoutError):
        _context(tmp_path, runtime).run([sys.executable, "-c", "pass"])


# -- external commands --------------------------------------------------------------------


def test_run_tool_returns_output() -> None:
    result = run_tool([sys.executable, "-c", "print('hi')"], timeout=30)
    assert result.text.strip() == "hi"
    assert result.returncode == 0


def test_run_tool_failure_carries_code_and_stderr_tail() -> None:
    script = "import sys; sys.stderr.write('x' * 20000 + 'the real reason'); sys.exit(3)"
    with pytest.raises(ToolFailedError) as failed:
        run_tool([sys.executable, "-c", script], timeout=30)
    assert failed.value.returncode == 3
    assert failed.value.stderr_tail.endswith("the real reason")
    assert len(failed.value.stderr_tail) <= 8 * 1024
    assert "exited with code 3" in str(failed.value)


def test_run_tool_bounds_stdout() -> None:
    result = run_tool([sys.executable, "-c", "print('y' * 100000)"], timeout=30, max_stdout=1000)
    assert result.stdout == b"y" * 1000
    assert result.stdout_truncated


def test_run_tool_timeout_kills_the_program() -> None:
    with pytest.raises(ToolTimeoutError, match=r"did not finish within 0\.3 s"):
        run_tool([sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.3)


def test_run_tool_missing_program_and_shell_strings() -> None:
    with pytest.raises(ToolNotFoundError, match="not installed"):
        run_tool(["transflow-no-such-tool"], timeout=5)
    with pytest.raises(StepUsageError, match="as a list"):
        run_tool("ffmpeg -i x", timeout=5)


# -- processor and publisher decisions ----------------------------------------------------


def _message(group: str | None) -> ReceivedMessage:
    attributes = {"MessageGroupId": group} if group else {}
    return ReceivedMessage("id", "h", "{}", attributes)


def test_batch_gate_stops_a_failed_group_and_everything_when_time_is_short() -> None:
    gate = BatchGate(time_margin=10)
    assert gate.refusal(_message("g1"), 100) is None
    gate = gate.after_failure(_message("g1"), 100)
    assert "group 'g1'" in (gate.refusal(_message("g1"), 100) or "")
    assert gate.refusal(_message("g2"), 100) is None
    gate = gate.after_failure(_message(None), 100)  # a standard queue: nothing to block
    assert gate.refusal(_message(None), None) is None
    assert "Lambda time" in (gate.refusal(_message("g3"), 5) or "")
    gate = gate.after_failure(_message("g3"), 5)
    assert gate.refusal(_message("g4"), 100) is not None


def test_error_codes() -> None:
    assert failure_code(TemplateNotFoundError("x", []), None) == "TEMPLATE_NOT_FOUND"
    assert failure_code(OutputPathError("x"), "s") == "OUTPUT_PATH_REFUSED"
    assert failure_code(ToolTimeoutError(["ffmpeg"], 1, ""), "s") == "COMMAND_TIMEOUT"
    assert failure_code(ToolFailedError(["ffmpeg"], 1, ""), "s") == "COMMAND_FAILED"
    assert failure_code(RuntimeError(), "s") == "STEP_FAILED"
    assert failure_code(RuntimeError(), None) == "JOB_FAILED"


def test_seq_and_dedup_ids() -> None:
    started = 1_795_860_000.0  # 2026-11-28T10:00:00Z
    assert first_seq(started) == 1_795_860_000_000_000
    assert first_seq(started + 0.001) - first_seq(started) == SEQS_PER_MS
    assert first_seq(started + 3600 * 24 * 365 * 100) < 2**53  # exact in JavaScript
    assert dedup_id("up-1", "2", 7) == "up-1:2:7"
    long = dedup_id("u" * 128, "1", 0)
    assert len(long) == 64
    assert long == dedup_id("u" * 128, "1", 0)
    assert long != dedup_id("u" * 128, "2", 0)
    assert should_flush(ProgressType.STEP_START, 1)
    assert should_flush(ProgressType.DONE, 1)
    assert not should_flush(ProgressType.PROGRESS, 9)
    assert should_flush(ProgressType.PROGRESS, 10)


@given(
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128
    ),
    st.integers(1, 50),
    st.integers(0, 10**6),
)
def test_dedup_ids_fit_sqs(upload_id: str, attempt: int, seq: int) -> None:
    value = dedup_id(upload_id, str(attempt), seq)
    assert 1 <= len(value) <= 128
    assert all(0x21 <= ord(c) <= 0x7E for c in value)


def test_status_record_round_trips_with_transloadit_keys() -> None:
    status = AssemblyStatus(
        assembly_id="up-1",
        upload_id="up-1",
        template_id="t",
        branch="main",
        user="u1",
        job_fingerprint="f",
        attempt=2,
        execution_start="2026-11-28T10:00:00.000Z",
        ok="ASSEMBLY_COMPLETED",
        uploads=(UploadRecord("a.wav", "b", "k", 3),),
        results={"encode": (ResultRecord("a.mp3", "o", "k2", 2, "audio/mpeg"),)},
    )
    text = status.to_json()
    assert '"assembly_id": "up-1"' in text
    assert '"execution_duration": null' in text
    assert AssemblyStatus.from_json(text) == status
    assert status.completed
    with pytest.raises(ValueError, match="not a transflow status record"):
        AssemblyStatus.from_json('{"ok": 1}')


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=60),
            _JSON.map(json.dumps),
            st.fixed_dictionaries({"uploadId": st.text(max_size=5)}).map(json.dumps),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_malformed_bodies_fail_alone_and_never_crash_the_batch(bodies: list[str]) -> None:
    proc = _offline_processor()
    records = [
        {"messageId": f"m-{i}", "body": body, "attributes": {"MessageGroupId": f"g{i}"}}
        for i, body in enumerate(bodies)
    ]
    response = proc.handle({"Records": records})
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        f"m-{i}" for i in range(len(bodies))
    ]


@functools.cache
def _offline_processor() -> JobProcessor:
    session = boto3.session.Session("k", "s", region_name="us-east-1")
    # A closed port: nothing here may reach the network, a malformed body fails before I/O.
    return JobProcessor(
        TemplateRegistry(),
        s3_client=session.client("s3", endpoint_url="http://127.0.0.1:9"),
        upload_bucket="b",
        sqs_client=session.client("sqs", endpoint_url="http://127.0.0.1:9"),
        progress=ProgressQueue("http://127.0.0.1:9/q.fifo"),
        output_bucket="out",
    )


def test_result_file_links_an_output_of_this_delivery_and_fetches_one_of_an_earlier(
    tmp_path: Path,
) -> None:
    runtime = _Runtime()
    ctx = _context(tmp_path, runtime)
    made = ctx.path("clip.mp3")
    made.write_bytes(b"ID3")
    ctx.upload_result(made, "audio/clip.mp3")
    assert ctx.result_file("audio/clip.mp3").read_bytes() == b"ID3"  # no fetch
    runtime.outputs.append(OutputFile("earlier", "old.txt", "out", PREFIX + "old.txt", 3, "t"))
    assert ctx.result_file("old.txt").read_bytes() == b"fetched " + (PREFIX + "old.txt").encode()
    with pytest.raises(StepUsageError, match="no earlier step"):
        ctx.result_file("never.txt")


@pytest.mark.parametrize("retry", [3, "attempts=3", {"attempts": 3}])
def test_a_step_retry_that_is_not_a_step_retry_is_refused(retry: object) -> None:
    # The check imports StepRetry itself (a registry without retries never loads it).
    template = TemplateRegistry().template("t", output_bucket="out")
    with pytest.raises(TemplateDefinitionError, match=r"retry must be a StepRetry"):
        template.step("s", retry=retry)  # type: ignore[arg-type]
