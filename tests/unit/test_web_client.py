"""The browser client (src/transflow/web/static/transflow.js): its node tests
(tests/web/*.test.mjs: part plans, byte accounting, retries, resume, event folding, and the
upload and follow flows against stand-ins for the browser's APIs), and that the wheel ships
it with its TypeScript declarations. Chromium drives it for real in tests/e2e/test_browser.py.

Without ``node`` the node tests are skipped outside CI; in CI (``CI`` set) its absence fails
them (``.ci/run`` installs nodejs).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

import transflow
from transflow.errors import WebAssetNotFoundError

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")


def test_the_node_tests_pass() -> None:
    if NODE is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install nodejs (see .ci/run): the browser client's tests need it")
        pytest.skip("node is not installed")
    tests = sorted(str(p) for p in (ROOT / "tests" / "web").glob("*.test.mjs"))
    assert tests, "no tests/web/*.test.mjs"
    result = subprocess.run(
        [NODE, "--test", *tests],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout


def test_the_assets_are_served_with_module_content_types() -> None:
    script = transflow.web_asset("transflow.js")
    assert script.content_type.startswith("text/javascript")
    assert b"export function upload(" in script.body
    assert b"export function follow(" in script.body
    types = transflow.web_asset("transflow.d.ts")
    assert b"export declare function upload(" in types.body
    assert set(transflow.WEB_ASSETS) == {"transflow.js", "transflow.d.ts"}
    assert sorted(p.name for p in transflow.web_static_dir().iterdir()) == sorted(
        transflow.WEB_ASSETS
    )


@pytest.mark.parametrize("name", ["../assets.py", "static/transflow.js", "", "app.js", "..%2f"])
def test_only_the_client_files_are_served(name: str) -> None:
    with pytest.raises(WebAssetNotFoundError, match="not a file of the browser client"):
        transflow.web_asset(name)


def test_the_declarations_name_every_export_of_the_module() -> None:
    script = transflow.web_asset("transflow.js").body.decode()
    types = transflow.web_asset("transflow.d.ts").body.decode()
    exported = set(re.findall(r"^export (?:async )?(?:function|class|const) (\w+)", script, re.M))
    declared = set(re.findall(r"^export declare (?:function|class|const) (\w+)", types, re.M))
    assert exported == declared


def test_the_wheel_ships_the_client(tmp_path: Path) -> None:
    from hatchling.builders.wheel import WheelBuilder

    built = list(WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"]))
    with zipfile.ZipFile(built[0]) as wheel:
        names = set(wheel.namelist())
        for asset in transflow.WEB_ASSETS:
            path = f"transflow/web/static/{asset}"
            assert path in names
            assert wheel.read(path) == transflow.web_asset(asset).body
        assert "transflow/cli/demo/static/app.js" in names
