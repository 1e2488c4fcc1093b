"""Branch and queue names: the examples the issue gives, and properties for any input."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transflow import ConfigError, queue_names, sanitize_branch
from transflow._wire.naming import MAX_QUEUE_NAME

SQS_FIFO_NAME = re.compile(r"[A-Za-z0-9_-]{1,75}\.fifo")
projects = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-_", min_size=1, max_size=60)
# Branches with something left after sanitising (the rest are refused, tested below).
branches = st.text().filter(lambda b: re.search("[a-z0-9]", b.lower()) is not None)


def test_the_issue_example() -> None:
    names = queue_names("myapp", "feature/Login-Page")
    assert names.processing == "myapp-feature-login-page--1cd8fc98-processing.fifo"
    assert names.progress == "myapp-feature-login-page--1cd8fc98-progress.fifo"
    assert names.dlq == "myapp-feature-login-page--1cd8fc98-dlq.fifo"


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("main", "main"),
        ("Feature/Login-Page", "feature-login-page--01ab65eb"),
        ("--a//b__c--", "a-b-c--f46aebe5"),
        ("Ünïcode", "n-code--00b24be8"),
        ("release/1.2.3", "release-1-2-3--88ded651"),
    ],
)
def test_sanitize_branch(branch: str, expected: str) -> None:
    assert sanitize_branch(branch) == expected


@pytest.mark.parametrize("branch", ["", "///", "!!!", "功能", "--", "ü"])
def test_a_branch_with_nothing_left_is_refused_not_made_main(branch: str) -> None:
    with pytest.raises(ConfigError, match="has no letters a-z or digits"):
        sanitize_branch(branch)
    with pytest.raises(ConfigError, match="branch"):
        queue_names("myapp", branch)


@given(st.text())
def test_sanitized_branches_are_clean_and_stable(branch: str) -> None:
    if re.search("[a-z0-9]", branch.lower()) is None:
        with pytest.raises(ConfigError):
            sanitize_branch(branch)
        return
    clean = sanitize_branch(branch)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*(--[0-9a-f]{8})?", clean)
    assert sanitize_branch(clean) == clean


@given(projects, branches)
def test_queue_names_are_valid_sqs_fifo_names(project: str, branch: str) -> None:
    names = queue_names(project, branch)
    for name in (names.processing, names.progress, names.dlq):
        assert len(name) <= MAX_QUEUE_NAME
        assert SQS_FIFO_NAME.fullmatch(name)
    stem = names.processing.removesuffix("-processing.fifo")
    assert names.progress == f"{stem}-progress.fifo"
    assert names.dlq == f"{stem}-dlq.fifo"


@given(projects, branches, branches)
def test_two_branches_never_share_a_queue(project: str, one: str, other: str) -> None:
    if sanitize_branch(one) != sanitize_branch(other):
        assert queue_names(project, one).processing != queue_names(project, other).processing


def test_long_names_are_shortened_with_a_stable_hash() -> None:
    long_a = "feature/" + "a" * 100
    long_b = "feature/" + "a" * 99 + "b"
    a, b = queue_names("myapp", long_a), queue_names("myapp", long_b)
    assert a.dlq != b.dlq
    assert len(a.processing) == MAX_QUEUE_NAME
    assert queue_names("myapp", long_a) == a  # stable across calls and processes


@pytest.mark.parametrize("project", ["", "my app", "app.fifo", "ü"])
def test_a_project_that_cannot_name_a_queue_is_refused(project: str) -> None:
    with pytest.raises(ConfigError, match="project"):
        queue_names(project, "main")
