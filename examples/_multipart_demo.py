"""What the multipart examples share: the browser's half, done with ``requests`` (the
shipped browser client does the same with fetch), and a bucket on the embedded endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "example-uploads"
MIB = 1024 * 1024


def make_bucket(s3: S3Client) -> None:
    s3.create_bucket(Bucket=BUCKET)


def upload_big_file(base: str, size: int = 11 * MIB) -> dict[str, Any]:
    """Ask for a ticket, PUT the parts (signed a few at a time), complete; complete's answer."""
    ticket = requests.post(
        f"{base}/api/uploads", json={"name": "film.mp4", "size": size}, timeout=30
    ).json()
    (file,) = ticket["files"]
    assert file["method"] == "multipart", file
    auth = {"Authorization": f"Bearer {ticket['streamToken']}"}
    target = {
        "uploadId": ticket["uploadId"],
        "key": file["key"],
        "multipartUploadId": file["multipartUploadId"],
    }
    numbers = list(range(1, file["partCount"] + 1))
    parts = []
    for start in range(0, len(numbers), 4):
        signed = requests.post(
            f"{base}/api/multipart/sign-parts",
            json={**target, "partNumbers": numbers[start : start + 4]},
            headers=auth,
            timeout=30,
        )
        signed.raise_for_status()
        for part in signed.json()["parts"]:
            offset = (part["partNumber"] - 1) * file["partSize"]
            data = b"\0" * min(file["partSize"], size - offset)
            answer = requests.put(part["url"], data=data, timeout=60)
            answer.raise_for_status()
            parts.append({"partNumber": part["partNumber"], "etag": answer.headers["ETag"]})
    done = requests.post(
        f"{base}/api/multipart/complete", json={**target, "parts": parts}, headers=auth, timeout=60
    )
    done.raise_for_status()
    result: dict[str, Any] = done.json()
    return result
