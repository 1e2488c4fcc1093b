"""A "Cancel" button's server side, in a Flask app: ``POST /cancel/<branch>/<upload_id>``.

The browser sends the stream token ``create_upload`` put on its ticket (``?token=`` or
``Authorization: Bearer``), the same one its progress stream uses: ``cancel_request``
checks it is for that upload and marks the upload ``ASSEMBLY_CANCELED`` in its status
record. The answer: 200 cancelled (a second click too), 409 too late (the job completed
first), 400/401/403 refused (``CancelRefusedError.status``). The processor then stops
before its next step and the browser's stream ends with a ``cancelled`` event.

    python -m examples.cancel_endpoint      # needs the dev extra (flask) and the local extra
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from flask import Flask, jsonify, request

from transflow import CancelRefusedError, cancel_request, issue_stream_token, sse, upload_channel
from transflow.cli.local import LocalAws

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue
    from mypy_boto3_s3 import S3Client


def create_app(s3_client: S3Client, output_bucket: str, stream_secret: str) -> Flask:
    """``output_bucket`` is the processor's (where status records live); ``stream_secret``
    is ``load_config().stream_secret``, the one ``create_upload`` signs tokens with."""
    app = Flask(__name__)

    @app.post("/cancel/<branch>/<upload_id>")
    def cancel(branch: str, upload_id: str) -> ResponseReturnValue:
        token = sse.bearer_token(request.headers.get("Authorization"), request.args.to_dict(False))
        try:
            result = cancel_request(
                s3_client,
                bucket=output_bucket,
                branch=branch,
                upload_id=upload_id,
                token=token,
                secret=stream_secret,
            )
        except CancelRefusedError as refused:
            return jsonify(error=str(refused)), refused.status
        if result.too_late:
            return jsonify(uploadId=upload_id, state="completed"), 409
        return jsonify(uploadId=upload_id, state="cancelled"), 200

    return app


def main() -> list[tuple[int, str]]:
    """Click "Cancel" twice, and once with another upload's token: what the browser sees."""
    with LocalAws() as aws:
        s3 = aws.s3()
        s3.create_bucket(Bucket="outputs")
        stream_secret = secrets.token_urlsafe(32)  # in production: TRANSFLOW_STREAM_SECRET
        # What create_upload(..., stream_secret=...) returns as ticket.stream_token:
        token = issue_stream_token(stream_secret, upload_channel("main", "upload-abc"))
        other = issue_stream_token(stream_secret, upload_channel("main", "upload-xyz"))
        client = create_app(s3, "outputs", stream_secret).test_client()
        answers = []
        for bearer in (token, token, other):
            response = client.post(
                "/cancel/main/upload-abc", headers={"Authorization": f"Bearer {bearer}"}
            )
            answers.append((response.status_code, response.get_data(as_text=True)))
    for status, body in answers:
        print(status, body.strip())
    return answers


if __name__ == "__main__":
    main()
