"""Two distinct branch names never share queues, keys, channels or tokens (issue 21).

A canonical name (lowercase a-z, 0-9, single inner dashes, at most 64 characters) is kept as
it is; any other name is cleaned and ends in ``--`` and 8 hex digits of the SHA-256 of the
name as given. The table below pins the outputs: a change that moves them moves queues.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, cast

import boto3
import pytest
from botocore.config import Config
from hypothesis import assume, given
from hypothesis import strategies as st

from transflow import (
    ChannelError,
    ConfigError,
    TransflowConfig,
    create_upload,
    issue_stream_token,
    queue_names,
    sanitize_branch,
)
from transflow._wire.channels import branch_channel, parse_channel, upload_channel
from transflow._wire.keys import job_key_problems, status_key, upload_prefix
from transflow._wire.model import ProcessingJob, S3ObjectRef
from transflow._wire.naming import (
    INSTANCE_ID_CHARS,
    MAX_BRANCH_CHARS,
    MAX_QUEUE_NAME,
    instance_queue_name,
    instance_queue_prefix,
    is_canonical_branch,
    topic_name,
)
from transflow.ingest.grouping import key_branch_problem
from transflow.streaming.records import StatusRecordSnapshots

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SECRET = "Zr4nTq9xW2bLkVp8sYc3Hd6JfM0aGe1uQo5iNt7R"

# The examples of the issue, and the outputs they must keep (a change here moves queues).
STABLE = [
    ("main", "main"),
    ("feature-login", "feature-login"),
    ("Main", "main--eb814be3"),
    ("MAIN", "main--95832d03"),
    ("main/", "main--40c7b379"),
    ("-main-", "main--ee581b90"),
    ("main\n", "main--6403203d"),
    ("feat/x", "feat-x--79b4cc55"),
    ("feat_x", "feat-x--9d61348d"),
    ("feat--x", "feat-x--3388c7a4"),
    ("wor\u212a", "work--aca4136f"),
    ("a" * 100, "a" * 54 + "--28165978"),
]

# Names with something left after cleaning (the rest are refused).
raw_names = st.text().filter(lambda b: re.search("[a-z0-9]", b.lower()) is not None)
kept_names = st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,5}", fullmatch=True)
projects = st.from_regex(r"[A-Za-z0-9_-]{1,60}", fullmatch=True)
CANONICAL = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*(--[0-9a-f]{8})?")
FIFO = re.compile(r"[A-Za-z0-9_-]{1,75}\.fifo")
STANDARD = re.compile(r"[A-Za-z0-9_-]{1,80}")


@pytest.mark.parametrize(("raw", "expected"), STABLE)
def test_branch_names_are_stable(raw: str, expected: str) -> None:
    assert sanitize_branch(raw) == expected


def test_the_issue_s_collisions_are_gone() -> None:
    outputs = [sanitize_branch(raw) for raw, _ in STABLE]
    assert len(set(outputs)) == len(outputs)
    main = queue_names("shop", "main")
    for raw in ("Main", "MAIN", "main/", "-main-", "main\n"):
        assert queue_names("shop", raw).processing != main.processing


# A name and a near neighbour: the edits that used to fold two names into one.
_EDITS = [
    str.upper,
    str.title,
    lambda b: b + "/",
    lambda b: "-" + b + "-",
    lambda b: b + "\n",
    lambda b: b.replace("-", "_"),
    lambda b: b.replace("-", "--"),
    lambda b: b.replace("-", "/"),
    lambda b: b.replace("k", "\u212a"),
]
near_pairs = st.tuples(kept_names, st.sampled_from(_EDITS)).map(lambda p: (p[0], p[1](p[0])))


@given(st.tuples(raw_names, raw_names) | near_pairs)
def test_distinct_names_never_share_a_canonical_name(pair: tuple[str, str]) -> None:
    one, other = pair
    assume(one != other)
    assert sanitize_branch(one) != sanitize_branch(other)


@given(raw_names)
def test_every_output_is_a_queue_key_and_channel_segment(raw: str) -> None:
    branch = sanitize_branch(raw)
    assert CANONICAL.fullmatch(branch)
    assert 1 <= len(branch) <= MAX_BRANCH_CHARS
    assert is_canonical_branch(branch)
    # One S3 key segment: no slash, never "." or "..", plain ASCII.
    assert "/" not in branch
    assert branch not in {".", ".."}
    assert upload_prefix(branch, "up-1").split("/")[1] == branch
    # One channel segment: parses back to itself.
    assert parse_channel(upload_channel(branch, "up-1")) == (branch, "up-1")
    assert parse_channel(branch_channel(branch)) == (branch, None)


@given(projects, raw_names)
def test_every_queue_built_from_a_branch_fits_sqs(project: str, raw: str) -> None:
    names = queue_names(project, raw)
    for fifo in (names.processing, names.progress, names.dlq, topic_name(project, raw)):
        assert len(fifo) <= MAX_QUEUE_NAME
        assert FIFO.fullmatch(fifo)
    for standard in (names.uploads, names.uploads_dlq):
        assert STANDARD.fullmatch(standard)
    # The longest name made from a branch: a hub instance's queue in fan-out mode.
    instance = instance_queue_name(instance_queue_prefix(project, raw), "f" * INSTANCE_ID_CHARS)
    assert len(instance) <= MAX_QUEUE_NAME
    assert FIFO.fullmatch(instance)


@given(raw_names)
def test_sanitizing_twice_changes_nothing(raw: str) -> None:
    once = sanitize_branch(raw)
    assert sanitize_branch(once) == once


@given(kept_names)
def test_a_canonical_name_is_kept_as_it_is(name: str) -> None:
    assume(len(name) <= MAX_BRANCH_CHARS)
    assert sanitize_branch(name) == name


def test_config_queues_keys_channels_and_tokens_agree() -> None:
    config = TransflowConfig(project="shop", branch="Main")
    assert config.branch == "main--eb814be3"
    assert config.queue_names.processing == "shop-main--eb814be3-processing.fifo"

    signer = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    ).client("s3", config=Config(signature_version="s3v4"))
    ticket = create_upload(
        signer, bucket="b", branch="Main", template_id="t", files=["a.wav"], stream_secret=SECRET
    )
    assert ticket.files[0].key.startswith("uploads/main--eb814be3/")
    assert ticket.channel == f"upload:main--eb814be3:{ticket.upload_id}"

    # Where a canonical branch is needed, a raw one is refused with its canonical form.
    with pytest.raises(ChannelError, match="main--eb814be3"):
        issue_stream_token(SECRET, "upload:Main:up-1")
    with pytest.raises(ChannelError, match="main--ee581b90"):
        issue_stream_token(SECRET, "upload:-main-:*")
    problem = key_branch_problem("uploads/Main/up-1/a.wav")
    assert problem is not None
    assert "main--eb814be3" in problem
    job = ProcessingJob("up-1", "t", (S3ObjectRef("b", "uploads/x"),), branch="Main")
    assert any("main--eb814be3" in p for p in job_key_problems(job))
    assert status_key("main--eb814be3", "up-1").startswith("outputs/main--eb814be3/")


def test_a_name_with_nothing_left_is_still_refused() -> None:
    with pytest.raises(ConfigError, match="no letters a-z or digits"):
        TransflowConfig(project="shop", branch="功能")


def test_snapshots_never_read_a_record_of_a_non_canonical_branch() -> None:
    # An S3 client that is never called: a read would raise AttributeError.
    snapshots = StatusRecordSnapshots(cast("S3Client", object()), "out")
    for channel in ("upload:Main:up-1", "upload:..:up-1", "upload:main\n:up-1"):
        assert snapshots(channel) is None
    assert snapshots.reads == 0
