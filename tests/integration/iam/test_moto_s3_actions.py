"""moto authorizes S3 requests by the IAM actions AWS documents, not by the API operation's
name: the premise of the enforced-IAM tests (moto 5.2.6 broke it; pyproject.toml excludes it).
A failure here explains those tests' 403s at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import botocore.exceptions
import pytest

from tests.integration.iam.conftest import UPLOADS, IamWorld

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KEY = "uploads/main/u1/one.wav"

# The operation, the one IAM action AWS authorizes it as (the service authorization
# reference), and the call.
CASES: list[tuple[str, str, Callable[[S3Client], object]]] = [
    ("HeadObject", "s3:GetObject", lambda s3: s3.head_object(Bucket=UPLOADS, Key=KEY)),
    ("ListObjectsV2", "s3:ListBucket", lambda s3: s3.list_objects_v2(Bucket=UPLOADS)),
    (
        "CreateMultipartUpload",
        "s3:PutObject",
        lambda s3: s3.create_multipart_upload(Bucket=UPLOADS, Key=KEY),
    ),
]


@pytest.mark.parametrize(("operation", "action", "call"), CASES, ids=[c[0] for c in CASES])
def test_moto_authorizes_s3_operations_as_their_iam_action(
    world: IamWorld, operation: str, action: str, call: Callable[[S3Client], object]
) -> None:
    harness = world.harness.s3()
    harness.create_bucket(Bucket=UPLOADS)
    harness.put_object(Bucket=UPLOADS, Key=KEY, Body=b"x")
    only = world.user(
        "only-" + action.replace(":", "-"),
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Only",
                    "Effect": "Allow",
                    "Action": [action],
                    "Resource": [f"arn:aws:s3:::{UPLOADS}", f"arn:aws:s3:::{UPLOADS}/*"],
                }
            ],
        },
    )
    # Enforcement is on, so a pass below means the action was checked, not skipped.
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        only.s3().delete_object(Bucket=UPLOADS, Key=KEY)
    try:
        call(only.s3())
    except botocore.exceptions.ClientError as exc:
        pytest.fail(
            f"moto refused {operation} to a user allowed {action}, which authorizes it on "
            f"AWS ({exc}); this moto checks another action: see the moto pin in "
            "pyproject.toml"
        )
