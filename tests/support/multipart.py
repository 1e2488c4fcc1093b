"""Multipart uploads as a browser sends them: sign a few parts, PUT each, read its ETag."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import requests

from transflow import MultipartEndpoint, PresignedFile

MIB = 1024 * 1024


def part_bytes(file: PresignedFile, number: int, fill: bytes = b"x") -> bytes:
    """Part ``number`` of a file of ``file.size`` bytes, made of ``fill``."""
    assert file.size is not None
    assert file.part_size is not None
    start = (number - 1) * file.part_size
    return fill * (min(file.part_size, file.size - start) // len(fill))


def body(file: PresignedFile, upload_id: str, **more: Any) -> dict[str, Any]:
    return {
        "uploadId": upload_id,
        "key": file.key,
        "multipartUploadId": file.multipart_upload_id,
        **more,
    }


def bearer(token: str | None) -> str:
    return f"Bearer {token}"


def put_parts(
    endpoint: MultipartEndpoint,
    file: PresignedFile,
    upload_id: str,
    token: str | None,
    numbers: Sequence[int],
    *,
    data: Callable[[int], bytes] | None = None,
) -> list[dict[str, Any]]:
    """Sign ``numbers`` (as many per request as the endpoint allows) and PUT each part;
    the parts as complete wants them."""
    done: list[dict[str, Any]] = []
    step = endpoint.max_urls
    for start in range(0, len(numbers), step):
        reply = endpoint.handle(
            "sign-parts",
            body(file, upload_id, partNumbers=list(numbers[start : start + step])),
            authorization=bearer(token),
        )
        assert reply.status == 200, reply.body
        for part in reply.body["parts"]:
            number = part["partNumber"]
            payload = data(number) if data else part_bytes(file, number)
            answer = requests.put(part["url"], data=payload, timeout=60)
            assert answer.status_code == 200, answer.text
            done.append({"partNumber": number, "etag": answer.headers["ETag"]})
    return done


def upload_all(
    endpoint: MultipartEndpoint, file: PresignedFile, upload_id: str, token: str | None
) -> dict[str, Any]:
    """Every part, then complete; complete's answer."""
    assert file.part_count is not None
    parts = put_parts(endpoint, file, upload_id, token, range(1, file.part_count + 1))
    reply = endpoint.handle(
        "complete", body(file, upload_id, parts=parts), authorization=bearer(token)
    )
    assert reply.status == 200, reply.body
    return dict(reply.body)
