"""What a Lambda handler's cold start loads: the example handlers and the SSE stream stay
off the modules only some paths use (bench/cold_import.py measures what this keeps)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from transflow._wire import limits, model, trace

ROOT = Path(__file__).parents[2]

_BUILD_PROCESSOR = """
import boto3
import examples.lambda_processor as example
from transflow import ProgressQueue
s3, sqs = (boto3.client(n, region_name="us-east-1") for n in ("s3", "sqs"))
example.build_processor(s3, sqs, ProgressQueue("https://q"), "uploads", "outputs")
"""


def loaded_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout
    return set(json.loads(out))


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        (
            "import examples.lambda_bridge",
            {
                "transflow.cli",
                "transflow.ops",
                "transflow.processing",
                "transflow.streaming",
                "transflow.ingest.uploads",
                "argparse",
                # Loaded when first used (a job to send, a retried call, a job too large
                # for a message), never by the import: issue 22's cold start.
                "cattrs",
                "tenacity",
                "transflow._aws.claimcheck",
            },
        ),
        (
            "import examples.lambda_processor",
            {
                "transflow.cli",
                "transflow.ops",
                "transflow.ingest",
                "transflow.streaming",
                "transflow.processing.external",
                "argparse",
                "cattrs",
                "tenacity",
                # Only a template with a webhook, a cancelled upload, a step that retries:
                # issue 22's cold start.
                "transflow.processing.webhooks",
                "transflow.processing.webhook_destinations",
                "transflow.processing.cancellation",
                "transflow.processing.retries",
                "transflow.processing.packing",  # only with pack_events=True
                "transflow._aws.sns_batch",  # only with a ProgressTopic (fan-out)
                "transflow._wire.packs",
                "wave",  # the example's own step imports it when it runs
            },
        ),
        (
            # The first invocation builds the processor: its templates have no webhook and
            # no step that retries, so neither module is loaded.
            _BUILD_PROCESSOR,
            {
                "transflow.processing.webhooks",
                "transflow.processing.webhook_destinations",
                "transflow.processing.cancellation",
                "transflow.processing.retries",
            },
        ),
        # "Copy this file into your project": requests is not a dependency of transflow.
        ("import examples.lambda_recovery", {"requests", "transflow.cli", "moto"}),
        ("from transflow import ProgressHub, sse", {"asyncio", "transflow.ingest"}),
    ],
)
def test_a_handler_loads_none_of_what_it_does_not_use(statement: str, forbidden: set[str]) -> None:
    assert loaded_after(statement) & forbidden == set()


_COMPILED = """
import sys, json, attrs
{statement}
compiled = set()
for name, module in list(sys.modules.items()):
    if not name.startswith("transflow"):
        continue
    for value in vars(module).values():
        if isinstance(value, type) and attrs.has(value):
            for method in {methods!r}:
                code = getattr(getattr(value, method), "__code__", None)
                if code is not None and code.co_filename.startswith("<attrs generated"):
                    compiled.add(value.__qualname__ + "." + method)
print(json.dumps(sorted(compiled)))
"""


@pytest.mark.parametrize(
    "statement",
    ["import examples.lambda_processor", _BUILD_PROCESSOR, "import examples.lambda_bridge"],
)
def test_no_class_on_a_handler_path_has_a_compiled_repr_eq_or_hash(statement: str) -> None:
    # attrs compiles these per class, about 0.25 ms a class: a quarter of the processor's
    # cold import. The classes a handler loads share transflow._wire.dunders' functions.
    code = _COMPILED.format(statement=statement, methods=("__repr__", "__eq__", "__hash__"))
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout
    compiled = json.loads(out)
    assert compiled == [], (
        f"{compiled}: give the class `__repr__ = fields_repr` (and `__eq__ = fields_eq`, "
        "`__hash__ = fields_hash` if it compares by value) from transflow._wire.dunders"
    )


_PATTERNS = """
import json, re
compiled = []
_compile = re.compile
re.compile = lambda pattern, flags=0: compiled.append(pattern) or _compile(pattern, flags)
{statement}
print(json.dumps([p for p in compiled if isinstance(p, str)]))
"""


@pytest.mark.parametrize("statement", ["import examples.lambda_processor", _BUILD_PROCESSOR])
def test_the_processor_compiles_no_pattern_only_some_messages_need(statement: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PATTERNS.format(statement=statement)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    # A tracestate, an X-Ray header, non-ASCII text, a group id: re compiles them on first
    # use (is_sqs_id never), not at the cold start.
    rare = {
        trace._TRACESTATE_MEMBER,
        trace._AWS_ROOT,
        trace._AWS_PARENT,
        model._NOT_SQS_SAFE,
        limits.SQS_ID,
    }
    assert set(json.loads(out)) & rare == set()
