"""The dev stack's multipart routes over HTTP, as the browser client calls them: a file
above the threshold goes up in parts (with CORS for PUT and the ETag exposed), resumes from
list-parts, completes, and its upload is processed once with the POSTed file beside it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.streaming import wait_until
from transflow.cli.demo.stack import DemoSettings, DemoStack
from transflow.cli.local import LocalAws

MIB = 1024 * 1024
ORIGIN = "http://127.0.0.1:9"


@pytest.fixture
def stack(aws: LocalAws) -> Iterator[DemoStack]:
    settings = DemoSettings(project="mpstack", endpoint_url=aws.endpoint_url, http_port=0)
    with DemoStack(settings) as running:
        yield running


def _api(stack: DemoStack, action: str, token: str, payload: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{stack.http_url}/api/multipart/{action}",
        json=payload,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_a_big_file_goes_up_in_parts_through_the_dev_stack(stack: DemoStack) -> None:
    ticket = requests.post(
        f"{stack.http_url}/api/uploads",
        json={
            "templateId": "document-archive",
            "files": [
                {"name": "big.txt", "type": "text/plain", "size": 11 * MIB},
                {"name": "small.txt", "type": "text/plain", "size": 5},
            ],
        },
        timeout=30,
    ).json()
    big, small = ticket["files"]
    assert (big["method"], small["method"]) == ("multipart", "post")
    assert (big["partSize"], big["partCount"]) == (5 * MIB, 3)
    token = ticket["streamToken"]
    target = {
        "uploadId": ticket["uploadId"],
        "key": big["key"],
        "multipartUploadId": big["multipartUploadId"],
    }

    signed = _api(stack, "sign-parts", token, {**target, "partNumbers": [1, 2]})
    assert signed.status_code == 200, signed.text
    assert signed.json()["expiresAt"].endswith("Z")
    urls = {p["partNumber"]: p["url"] for p in signed.json()["parts"]}
    preflight = requests.options(
        urls[1],
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"},
        timeout=30,
    )
    assert "PUT" in preflight.headers.get("Access-Control-Allow-Methods", "")
    first = requests.put(urls[1], data=b"a" * (5 * MIB), headers={"Origin": ORIGIN}, timeout=60)
    assert first.status_code == 200
    assert "ETag" in first.headers.get("Access-Control-Expose-Headers", "")
    # The page is refreshed here: part 2 was never sent. It asks what S3 holds.
    listed = _api(stack, "list-parts", token, target).json()["parts"]
    assert [(p["partNumber"], p["size"]) for p in listed] == [(1, 5 * MIB)]
    rest = _api(stack, "sign-parts", token, {**target, "partNumbers": [2, 3]}).json()["parts"]
    etags = {1: first.headers["ETag"]}
    for part, size in zip(rest, (5 * MIB, MIB), strict=True):
        answer = requests.put(part["url"], data=b"b" * size, timeout=60)
        etags[part["partNumber"]] = answer.headers["ETag"]
    parts = [{"partNumber": n, "etag": e} for n, e in sorted(etags.items())]
    done = _api(stack, "complete", token, {**target, "parts": parts})
    assert done.status_code == 200, done.text
    assert done.json()["size"] == 11 * MIB

    posted = requests.post(
        small["url"],
        data=small["fields"],
        files={"file": ("small.txt", b"hello", "text/plain")},
        timeout=30,
    )
    assert posted.status_code in (200, 201, 204)

    def state() -> str:
        url = f"{stack.http_url}/api/uploads/{ticket['uploadId']}"
        return str(requests.get(url, timeout=30).json()["state"])

    wait_until(lambda: state() == "completed", timeout=60, what="the job to complete")
    assert stack.requests.count("SendMessageBatch") >= 1
    assert stack.dead_lettered() == 0


def test_the_routes_refuse_without_a_token_and_answer_json_errors(stack: DemoStack) -> None:
    answer = requests.post(
        f"{stack.http_url}/api/multipart/sign-parts",
        json={"uploadId": "u", "key": "uploads/main/u/x", "multipartUploadId": "m"},
        timeout=30,
    )
    assert answer.status_code == 401
    assert answer.json()["error"] == "MultipartDeniedError"
    unknown = requests.post(f"{stack.http_url}/api/multipart/nothing", json={}, timeout=30)
    assert unknown.status_code == 404
    assert stack.multipart().stats().denied == 1
