"""Headless Chromium drives the dev page: files chosen, uploaded through presigned POSTs,
progress followed over EventSource, every upload at 100 % with links to its outputs.

Needs Debian's chromium and chromium-driver (``.ci/run`` installs them). Outside CI a
machine without them skips this test; in CI (``CI`` set) their absence fails it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.support.s3gate import held_parts
from transflow.cli.demo.samples import write_document, write_tone
from transflow.cli.demo.stack import DemoSettings, DemoStack

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        pytest.fail("CI must install chromium and chromium-driver (see .ci/run)")
    pytest.skip("chromium and chromedriver are not installed", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture
def stack() -> Iterator[DemoStack]:
    # Its own embedded endpoint: the page talks to it from the browser, over HTTP.
    with DemoStack(DemoSettings(project="browser", http_port=0)) as running:
        yield running


MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part, which moto enforces too


@pytest.fixture
def multipart_stack() -> Iterator[DemoStack]:
    # Files above 5 MiB go as multipart uploads, in 5 MiB parts.
    settings = DemoSettings(project="browser-multipart", http_port=0, multipart_threshold=PART)
    with DemoStack(settings) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never downloads a browser or a driver.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def upload(browser: webdriver.Chrome, template: str, files: list[Path]) -> None:
    Select(browser.find_element(By.ID, "template")).select_by_value(template)
    chooser = browser.find_element(By.ID, "files")
    chooser.clear()
    chooser.send_keys("\n".join(str(f) for f in files))
    browser.find_element(By.ID, "start").click()


def test_the_page_uploads_files_and_follows_them_to_their_outputs(
    stack: DemoStack, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    tones = [write_tone(tmp_path / f"tone-{i}.wav", seconds=0.5) for i in range(2)]
    notes = write_document(tmp_path / "notes.txt", words=3000)

    browser.get(stack.http_url + "/")
    chooser = browser.find_element(By.ID, "files")
    # The chooser offers what the chosen template takes: WAVs, then any file.
    assert chooser.get_attribute("accept") == ".wav,audio/wav,audio/x-wav"
    Select(browser.find_element(By.ID, "template")).select_by_value("document-archive")
    assert chooser.get_attribute("accept") == ""
    upload(browser, "audio-normalise", tones)
    WebDriverWait(browser, 10).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, ".upload")) == 1
    )
    upload(browser, "document-archive", [notes])

    def all_done(b: webdriver.Chrome) -> bool:
        cards = b.find_elements(By.CSS_SELECTOR, ".upload")
        return len(cards) == 2 and all(
            c.get_attribute("data-state") == "completed" and c.get_attribute("data-outputs")
            for c in cards
        )

    WebDriverWait(browser, 60, poll_frequency=0.2).until(all_done)
    cards = browser.find_elements(By.CSS_SELECTOR, ".upload")
    assert [c.get_attribute("data-percent") for c in cards] == ["100", "100"]
    outputs = [c.get_attribute("data-outputs") or "" for c in cards]
    assert outputs == ["2", "2"]  # 2 WAVs; 1 gzip + 1 manifest
    # Past the bridge, the "waiting for the bridge" note is gone.
    assert all("waiting" not in c.find_element(By.CSS_SELECTOR, ".log").text for c in cards)

    links = browser.find_elements(By.CSS_SELECTOR, "a.output")
    assert len(links) == 4
    wav = next(a.get_attribute("href") for a in links if ".wav" in a.text)
    assert wav is not None
    with urllib.request.urlopen(wav, timeout=10) as response:
        assert response.read(4) == b"RIFF"
    log: list[dict[str, object]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    console = [e for e in log if e.get("level") == "SEVERE"]
    assert console == []


def severe_console_entries(browser: webdriver.Chrome) -> list[dict[str, object]]:
    log: list[dict[str, object]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    return [e for e in log if e.get("level") == "SEVERE"]


def docs_example() -> tuple[str, str]:
    """docs/browser.md's complete page: its markup and its module script, as written."""
    text = (ROOT / "docs" / "browser.md").read_text(encoding="utf-8")
    found = re.search(r"^```html\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    assert found is not None, "docs/browser.md has no html example"
    markup, _, rest = found.group(1).partition('<script type="module">')
    script, _, _ = rest.partition("</script>")
    assert "upload(" in script
    assert "follow(" in script
    return markup, script


def test_the_docs_example_page_uploads_and_follows_to_the_end(
    stack: DemoStack, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    notes = write_document(tmp_path / "notes.txt", words=2000)
    markup, script = docs_example()
    # The dev stack serves what the example expects, on one origin: /transflow.js,
    # /api/uploads, /api/multipart/ and /events. The example replaces the dev page's body;
    # one line added after its script tells the test its listener is in place.
    browser.get(stack.http_url + "/")
    # The dev page's own module may still be loading: replacing the body under it makes it
    # fail on missing elements. It marks the page once its listeners are set.
    WebDriverWait(browser, 10).until(
        lambda b: b.execute_script("return document.documentElement.dataset.devPage") == "ready"
    )
    browser.execute_script(
        "document.body.innerHTML = arguments[0];"
        "const s = document.createElement('script'); s.type = 'module';"
        "s.textContent = arguments[1] + '\\nwindow.exampleReady = true;';"
        "document.body.append(s);",
        markup,
        script,
    )
    WebDriverWait(browser, 10).until(lambda b: b.execute_script("return window.exampleReady"))
    browser.find_element(By.ID, "files").send_keys(str(notes))
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 60, poll_frequency=0.2).until(
        lambda _: status.text == "done" or "error" in status.text or "failed" in status.text
    )
    assert status.text == "done"
    bar = browser.find_element(By.ID, "bar")
    assert bar.get_attribute("value") == bar.get_attribute("max") == str(notes.stat().st_size)
    assert severe_console_entries(browser) == []


@attrs.define
class ProcessingQueueLog:
    """What goes to and comes from the stack's processing queue, from the stack's own SQS
    client: each job sent (its upload id and deduplication id) and each job received."""

    sent: list[tuple[str, str]] = attrs.field(factory=list)
    received: list[str] = attrs.field(factory=list)


def processing_queue_log(stack: DemoStack) -> ProcessingQueueLog:
    log = ProcessingQueueLog()
    assert stack.urls is not None
    processing = stack.urls.processing

    def on_send(params: dict[str, Any], **_: Any) -> None:
        if params.get("QueueUrl") == processing:
            for entry in params.get("Entries") or [params]:
                log.sent.append(
                    (str(entry.get("MessageGroupId")), str(entry.get("MessageDeduplicationId")))
                )

    def before_receive(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["queue_url"] = params.get("QueueUrl")

    def after_receive(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if context.get("queue_url") == processing:
            log.received.extend(
                str(json.loads(m["Body"]).get("uploadId")) for m in parsed.get("Messages", [])
            )

    events = stack.sqs.meta.events
    for operation in ("SendMessageBatch", "SendMessage"):
        events.register(f"provide-client-params.sqs.{operation}", on_send)
    events.register("provide-client-params.sqs.ReceiveMessage", before_receive)
    events.register("after-call.sqs.ReceiveMessage", after_receive)
    return log


def test_a_big_upload_interrupted_by_a_refresh_resumes_and_completes(
    multipart_stack: DemoStack, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    stack = multipart_stack
    big = tmp_path / "big.bin"
    size = 2 * PART + 2 * MiB  # three parts: 5, 5 and 2 MiB
    big.write_bytes(bytes(range(256)) * (size // 256))
    jobs = processing_queue_log(stack)
    browser.get(stack.http_url + "/")

    def card_data(name: str) -> str | None:
        return browser.find_element(By.CSS_SELECTOR, ".upload").get_attribute(f"data-{name}")

    # Parts 2 and 3 reach S3 but get no answer; part 1 is confirmed. Then the page goes away
    # (a refresh), and the held parts fail as dropped connections do: S3 has part 1 only.
    with held_parts(2, 3) as gate:
        upload(browser, "document-archive", [big])
        WebDriverWait(browser, 30, poll_frequency=0.1).until(
            lambda _: (
                card_data("bytes-acknowledged") == str(PART) and gate.held() == frozenset({2, 3})
            )
        )
        assert card_data("method") == "multipart"
        first_id = card_data("upload-id")
        browser.refresh()
        gate.release()
        WebDriverWait(browser, 30, poll_frequency=0.1).until(
            lambda _: gate.dropped() == frozenset({2, 3})
        )
    assert browser.find_elements(By.CSS_SELECTOR, ".upload") == []

    # The user chooses the same file again: the page resumes the upload it kept.
    upload(browser, "document-archive", [big])

    def finished(_: webdriver.Chrome) -> bool:
        return card_data("state") in ("completed", "error", "upload-failed") and bool(
            card_data("outputs") or card_data("state") != "completed"
        )

    WebDriverWait(browser, 60, poll_frequency=0.2).until(finished)
    assert card_data("state") == "completed", card_data("upload-error")
    assert card_data("upload-id") == first_id  # the same upload, not a new one
    assert card_data("bytes-resumed") == str(PART)  # what S3 had: part 1
    assert card_data("bytes-sent") == str(size - PART)  # parts 2 and 3, each once
    assert card_data("bytes-acknowledged") == card_data("bytes-loaded") == str(size)
    assert card_data("bytes-total") == str(size)
    text = browser.find_element(By.CSS_SELECTOR, ".upload .bytes").text
    assert text == "12.0 MiB of 12.0 MiB uploaded (5.0 MiB already there)"
    # S3 holds the file as sent, and the bridge queued its job once.
    assert first_id is not None
    key = f"uploads/{stack.settings.branch}/{first_id}/big.bin"
    stored = stack.s3.get_object(Bucket=stack.settings.upload_bucket, Key=key)["Body"].read()
    assert stored == big.read_bytes()
    # The bridge queued its job once: one job in the queue, received once. (moto notifies
    # ObjectCreated:Put and ObjectCreated:CompleteMultipartUpload for one completion, where
    # S3 sends the second only; the bridge sends the same job for both, with the same
    # deduplication id, and the FIFO queue keeps one.)
    assert {group for group, _ in jobs.sent} == {first_id}
    assert len({dedup for _, dedup in jobs.sent}) == 1
    assert jobs.received == [first_id]
    assert severe_console_entries(browser) == []


def test_the_abort_button_aborts_the_multipart_upload(
    multipart_stack: DemoStack, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    stack = multipart_stack
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(3 * PART))
    browser.get(stack.http_url + "/")
    bucket = stack.settings.upload_bucket
    with held_parts(2, 3) as gate:
        upload(browser, "document-archive", [big])
        card = browser.find_element(By.CSS_SELECTOR, ".upload")
        WebDriverWait(browser, 30, poll_frequency=0.1).until(
            lambda _: gate.held() == frozenset({2, 3})
        )
        assert len(stack.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
        card.find_element(By.CSS_SELECTOR, "button.abort").click()
        WebDriverWait(browser, 30, poll_frequency=0.1).until(
            lambda _: card.get_attribute("data-state") == "upload-failed"
        )
    assert "aborted" in (card.get_attribute("data-upload-error") or "")
    WebDriverWait(browser, 10, poll_frequency=0.1).until(
        lambda _: stack.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    )
    # Nothing is left to resume: choosing the file again starts a new upload.
    assert browser.execute_script("return Object.keys(localStorage)") == []
