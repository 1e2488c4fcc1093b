"""examples/sam_template.py writes a template that cfn-lint accepts and that fits the
example handlers it names."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest
import yaml

from examples import sam_template
from tests.support.cfn import lint_errors

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def required_environment(module: str) -> set[str]:
    """The variables an example handler reads with ``os.environ["NAME"]`` (no default)."""
    tree = ast.parse((EXAMPLES / f"{module}.py").read_text(encoding="utf-8"))
    return {
        node.slice.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "environ"
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    }


def test_the_example_writes_a_template_cfn_lint_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = sam_template.main(["-o", str(tmp_path / "template.yaml")])
    text = target.read_text(encoding="utf-8")
    assert lint_errors(text) == []
    assert "next: sam build && sam deploy --guided" in capsys.readouterr().out

    resources = yaml.safe_load(text)["Resources"]
    processor = resources["ProcessorFunction"]["Properties"]
    assert processor["Timeout"] == 160  # a sixth of the 960 s visibility timeout
    jobs = processor["Events"]["Jobs"]["Properties"]
    assert jobs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert jobs["ScalingConfig"] == {"MaximumConcurrency": 50}

    # The handlers it names exist in the examples, and get every variable they require.
    for name, module in (
        ("BridgeFunction", "lambda_bridge"),
        ("ProcessorFunction", "lambda_processor"),
        ("RecoveryFunction", "lambda_recovery"),
    ):
        function = resources[name]["Properties"]
        handler_module, _, attribute = function["Handler"].partition(".")
        assert handler_module == module
        assert callable(getattr(importlib.import_module(f"examples.{module}"), attribute))
        variables = set(function["Environment"]["Variables"])
        assert required_environment(module) <= variables, (module, required_environment(module))


def test_the_example_reads_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "transflow.config.json"
    config.write_text(
        json.dumps(
            {"project": "shop", "branch": "feature/Cart", "sqs": {"visibilityTimeoutSec": 600}}
        )
    )
    target = sam_template.main(
        ["--config", str(config), "--upload-bucket", "shop-in", "-o", str(tmp_path / "t.yaml")]
    )
    text = target.read_text(encoding="utf-8")
    assert lint_errors(text) == []
    resources = yaml.safe_load(text)["Resources"]
    assert resources["ProcessingQueue"]["Properties"]["QueueName"] == (
        "shop-feature-cart--ba2c426a-processing.fifo"
    )
    assert resources["ProcessorFunction"]["Properties"]["Timeout"] == 100


def test_the_processor_knows_the_queues_max_receive_count() -> None:
    from transflow.config import SqsConfig, TransflowConfig
    from transflow.ops.sam import SamOptions, sam_template

    config = TransflowConfig(project="myapp", sqs=SqsConfig(max_receive_count=7))
    text = sam_template(config, SamOptions(upload_bucket="myapp-uploads"))
    assert "TRANSFLOW_MAX_RECEIVE_COUNT" in text
    assert "'7'" in text or '"7"' in text
