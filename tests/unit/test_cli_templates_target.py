"""``transflow worker --templates``: a bad target is one line naming what is wrong."""

from __future__ import annotations

import argparse
import re

import pytest

from transflow.cli import worker
from transflow.cli.app import main
from transflow.cli.worker import load_registry
from transflow.errors import ConfigError
from transflow.processing.templates import TemplateRegistry

registry = TemplateRegistry()


def make_registry() -> TemplateRegistry:
    return registry


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("json:dumps", "calling dumps() failed"),
        ("json:nothing", "has no attribute 'nothing'"),
        ("no_such_module_here:x", "cannot import no_such_module_here"),
        ("json:decoder", "is a module, not a TemplateRegistry"),
        ("json", "expected 'package.module:registry'"),
    ],
)
def test_a_bad_target_is_one_line(spec: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_registry(spec)
    assert main(["worker", "--templates", spec]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert says in err


def test_a_registry_or_a_factory_of_one_is_accepted() -> None:
    assert load_registry(f"{__name__}:registry") is registry
    assert load_registry(f"{__name__}:make_registry") is registry


webhooked = TemplateRegistry()
webhooked.template("hook", webhook_url="http://10.1.2.3/hook", webhook_secret="s")


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ([], "cleartext http"),
        (["--webhook-allow-http"], "10.1.2.3 is a private address"),
        (["--webhook-allow-http", "--webhook-allow-network", "10.1.0.0/33"], "allowed_networks"),
    ],
)
def test_the_worker_refuses_a_webhook_destination_before_touching_aws(
    flags: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", "--templates", f"{__name__}:webhooked", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert says in err


def test_the_worker_flags_allow_a_trusted_webhook_destination() -> None:
    parser = argparse.ArgumentParser()
    worker._configure(parser)
    base = ["--templates", "x:y", "--webhook-allow-http"]
    args = parser.parse_args([*base, "--webhook-allow-network", "10.1.0.0/16"])
    assert worker.webhook_sender(args, webhooked).allow_http
    args = parser.parse_args([*base, "--webhook-allow-host", "10.1.2.3"])
    worker.webhook_sender(args, webhooked)
