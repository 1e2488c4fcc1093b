"""A second endpoint for the integration tests: one already running (LocalStack, started by
``make fidelity``), named by ``TRANSFLOW_TEST_ENDPOINT``.

It has no reset API in its community build, so each test's reset deletes what the tests can
have made: every SNS subscription and topic, every SQS queue, and every S3 bucket with its
objects, versions and unfinished multipart uploads.
"""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import attrs

from transflow.cli.local import LocalAws

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

__all__ = ["ENDPOINT_VARIABLE", "RemoteEndpoint", "loopback_endpoint", "on_other_endpoint"]

ENDPOINT_VARIABLE = "TRANSFLOW_TEST_ENDPOINT"


def on_other_endpoint() -> bool:
    """Whether the tests run on the endpoint ``TRANSFLOW_TEST_ENDPOINT`` names, not moto."""
    return bool(os.environ.get(ENDPOINT_VARIABLE))


def loopback_endpoint(url: str) -> str:
    """``url`` without a trailing slash, if it is ``http://`` on a loopback address: the
    tests must never reach anything but this machine."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback or parts.port is None:
        raise ValueError(
            f"{ENDPOINT_VARIABLE}={url!r}: expected http://127.0.0.1:PORT (a loopback "
            "address and a port; the tests never reach another machine)"
        )
    return f"http://{parts.hostname}:{parts.port}"


@attrs.define
class RemoteEndpoint(LocalAws):
    """An endpoint someone else started: start and stop do nothing, reset empties it."""

    url: str = attrs.field(default="", kw_only=True)
    # Made once: building a client costs more than the few calls an empty reset makes.
    _cleaners: tuple[SNSClient, SQSClient, S3Client] | None = attrs.field(default=None, init=False)

    def start(self) -> LocalAws:
        return self

    def stop(self) -> None:
        return None

    @property
    def endpoint_url(self) -> str:
        return self.url

    def reset(self) -> None:
        if self._cleaners is None:
            self._cleaners = (self.sns(), self.sqs(), self.s3())
        sns, sqs, s3 = self._cleaners
        for subscriptions in sns.get_paginator("list_subscriptions").paginate():
            for subscription in subscriptions.get("Subscriptions", []):
                arn = subscription.get("SubscriptionArn", "")
                if arn.startswith("arn:"):
                    sns.unsubscribe(SubscriptionArn=arn)
        for topics in sns.get_paginator("list_topics").paginate():
            for topic in topics.get("Topics", []):
                sns.delete_topic(TopicArn=topic["TopicArn"])
        for queues in sqs.get_paginator("list_queues").paginate():
            for queue_url in queues.get("QueueUrls", []):
                sqs.delete_queue(QueueUrl=queue_url)
        for bucket in s3.list_buckets().get("Buckets", []):
            _delete_bucket(s3, bucket["Name"])


def _delete_bucket(s3: S3Client, name: str) -> None:
    for versions in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        doomed: list[ObjectIdentifierTypeDef] = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for item in [*versions.get("Versions", []), *versions.get("DeleteMarkers", [])]
        ]
        for start in range(0, len(doomed), 1000):
            s3.delete_objects(Bucket=name, Delete={"Objects": doomed[start : start + 1000]})
    for uploads in s3.get_paginator("list_multipart_uploads").paginate(Bucket=name):
        for upload in uploads.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    s3.delete_bucket(Bucket=name)
