"""Every role of the pipeline as its own IAM user, with exactly the policy transflow
generates, on a moto server that enforces IAM.

moto checks a request against the policies of the user whose access key signed it once
enforcement is on (``POST /moto-api/reset-auth`` with ``0``; ``inf`` switches it off). The
switch is global to the process, so this fixture has its own server, switches it on only
for the test body and always off again, and no other test runs meanwhile (the suite is not
run in parallel threads).

Where moto authorizes a call differently from AWS, the difference is bridged here, beside
the generated policy and never inside it (:func:`moto_compat`), so the documents under test
are exactly what ``transflow iam-policy`` prints.
"""

from __future__ import annotations

import copy
import json
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs
import boto3
import pytest

from transflow import TransflowConfig
from transflow.cli.local import LocalAws, local_client_config
from transflow.ops.iam import IamPolicies, PolicyDocument, iam_policies

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

REGION = "us-east-1"
ACCOUNT = "123456789012"
UPLOADS = "tf-iam-uploads"
OUTPUTS = "tf-iam-outputs"
PROJECT = "iamapp"
ROLES = ("bridge", "processor", "stream", "operator", "recovery", "uploads")

# moto names the action of a batch call after the operation (sqs:SendMessageBatch), where
# AWS authorizes it as the single-message action; and it checks HeadBucket as the
# non-existent s3:HeadBucket where AWS uses s3:ListBucket; and it prefixes CloudWatch
# actions with the endpoint's name, "monitoring". These moto-only names are added to the
# copy given to moto: the generated policy must never contain them.
MOTO_ONLY_ACTIONS = {
    "sqs:SendMessage": ("sqs:SendMessageBatch",),
    "sqs:DeleteMessage": ("sqs:DeleteMessageBatch",),
    "sqs:ChangeMessageVisibility": ("sqs:ChangeMessageVisibilityBatch",),
    "s3:ListBucket": ("s3:HeadBucket",),
    "cloudwatch:GetMetricStatistics": ("monitoring:GetMetricStatistics",),
    "sns:Publish": ("sns:PublishBatch",),
}

_SESSION = boto3.session.Session(region_name=REGION)

ADMIN_POLICY: PolicyDocument = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "Harness", "Effect": "Allow", "Action": ["*"], "Resource": ["*"]}],
}


def moto_compat(policy: PolicyDocument) -> PolicyDocument:
    """The policy as moto must see it to evaluate it as AWS evaluates the original: moto
    matches a resource as a regular expression made by turning ``*`` into ``.*``, so IAM's
    one-character wildcard ``?`` becomes ``.``."""
    compat = copy.deepcopy(policy)
    for statement in compat["Statement"]:
        actions = statement["Action"]
        for action in list(actions):
            actions.extend(a for a in MOTO_ONLY_ACTIONS.get(action, ()) if a not in actions)
        statement["Resource"] = [r.replace("?", ".") for r in statement["Resource"]]
    return compat


@attrs.define
class Principal:
    """One IAM user and boto3 clients signed with its key; records every refused call."""

    name: str
    endpoint: str
    key_id: str
    secret: str
    denied: list[str] = attrs.field(factory=list)
    _clients: dict[str, Any] = attrs.field(factory=dict, repr=False)

    def _client(self, service: str, **config: Any) -> Any:
        # Made once per service, from one session for all users (it caches the service
        # models): a boto3 client costs a tenth of a second to build from scratch.
        if service in self._clients:
            return self._clients[service]
        client = _SESSION.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            config=local_client_config(**config),
        )
        client.meta.events.register("after-call", self._record)
        self._clients[service] = client
        return client

    def _record(self, http_response: Any, model: Any, **_: Any) -> None:
        if http_response.status_code == 403:
            self.denied.append(f"{model.service_model.service_name}:{model.name}")

    def sqs(self) -> SQSClient:
        client: SQSClient = self._client("sqs")
        return client

    def s3(self) -> S3Client:
        # SigV4 for presigned POST policies, as production must sign them.
        client: S3Client = self._client("s3", signature_version="s3v4")
        return client

    def sns(self) -> SNSClient:
        client: SNSClient = self._client("sns")
        return client

    def cloudwatch(self) -> CloudWatchClient:
        client: CloudWatchClient = self._client("cloudwatch")
        return client

    def use_in_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make the ``transflow`` command (boto3's default chain) sign as this user."""
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", self.key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", self.secret)
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@attrs.define
class IamWorld:
    """The enforcing endpoint: an all-powerful harness user for set-up and checks, and one
    user per role with the generated policy."""

    server: LocalAws
    harness: Principal
    config: TransflowConfig = attrs.field(factory=lambda: TransflowConfig(project=PROJECT))

    @property
    def endpoint(self) -> str:
        return self.server.endpoint_url

    def policies(self, *, claim_check_prefix: str | None = None) -> IamPolicies:
        """Exactly what ``transflow iam-policy`` prints for this project."""
        return iam_policies(
            self.config,
            ACCOUNT,
            REGION,
            upload_bucket=UPLOADS,
            output_bucket=OUTPUTS,
            claim_check_prefix=claim_check_prefix,
        )

    def user(self, name: str, policy: PolicyDocument) -> Principal:
        """A new IAM user whose only permissions are ``policy``."""
        iam = self.harness._client("iam")
        iam.create_user(UserName=name)
        if policy["Statement"]:  # IAM refuses a policy without statements
            arn = iam.create_policy(
                PolicyName=f"{name}-policy", PolicyDocument=json.dumps(moto_compat(policy))
            )["Policy"]["Arn"]
            iam.attach_user_policy(UserName=name, PolicyArn=arn)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return Principal(name, self.endpoint, key["AccessKeyId"], key["SecretAccessKey"])

    @contextmanager
    def unenforced(self) -> Iterator[None]:
        """IAM off for a moment: moto cannot authorize a browser's POST upload (it looks for
        an Authorization header and answers 500), which AWS authorizes as its signer."""
        _moto_api(self.endpoint, "reset-auth", b"inf")
        try:
            yield
        finally:
            _moto_api(self.endpoint, "reset-auth", b"0")

    def roles(self, policies: IamPolicies) -> dict[str, Principal]:
        """One user per role, each with its document of ``policies``."""
        return {role: self.user(role, doc) for role, doc in policies.by_role().items()}


def _moto_api(endpoint: str, path: str, body: bytes = b"") -> None:
    # Not a form: moto reads the raw body (the count of requests left unchecked).
    request = urllib.request.Request(
        f"{endpoint}/moto-api/{path}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def _queue_name_as_resource() -> Callable[[], None]:
    """moto checks GetQueueUrl and CreateQueue (named by QueueName), the message move task
    calls (named by SourceArn) and ListQueues against the resource "*", so a policy scoped
    to queue ARNs, as on AWS, would be refused them: check them against the named queue's
    ARN (ListQueues: the account's queues under the prefix), as AWS does; and SNS calls on
    a topic against the topic's ARN. Returns the undo."""
    from moto.sqs.responses import SQSResponse

    original = SQSResponse._determine_resource
    undo_sns = _topic_as_resource()

    def determine_resource(self: Any) -> str:
        action = self._get_action()
        if action in ("GetQueueUrl", "CreateQueue"):
            name = self._get_param("QueueName")
            if name:
                return f"arn:aws:sqs:{self.region}:{self.current_account}:{name}"
        if action in ("StartMessageMoveTask", "ListMessageMoveTasks"):
            source = self._get_param("SourceArn")
            if source:
                return str(source)
        if action == "ListQueues":
            prefix = self._get_param("QueueNamePrefix") or ""
            return f"arn:aws:sqs:{self.region}:{self.current_account}:{prefix}"
        return str(original(self))

    SQSResponse._determine_resource = determine_resource  # type: ignore[method-assign]

    def undo() -> None:
        SQSResponse._determine_resource = original  # type: ignore[method-assign]
        undo_sns()

    return undo


def _topic_as_resource() -> Callable[[], None]:
    """moto checks every SNS call against the resource "*" (it has no resource of its
    own), so a policy naming the topic, as on AWS, would be refused Publish and Subscribe:
    check the calls that name a topic (TopicArn, or CreateTopic's Name) against it. Calls
    without resource-level permissions on AWS (Unsubscribe) stay on "*"."""
    from moto.sns.responses import SNSResponse

    def determine_resource(self: Any) -> str:
        topic = self._get_param("TopicArn")
        if topic:
            return str(topic)
        if self._get_action() == "CreateTopic":
            return f"arn:aws:sns:{self.region}:{self.current_account}:{self._get_param('Name')}"
        return "*"

    SNSResponse._determine_resource = determine_resource  # type: ignore[attr-defined]

    def undo() -> None:
        del SNSResponse._determine_resource  # type: ignore[attr-defined]

    return undo


@pytest.fixture(scope="session")
def iam_server() -> Iterator[LocalAws]:
    """A moto server of its own, so that enforcement is never on for the other tests' one."""
    undo = _queue_name_as_resource()
    try:
        with LocalAws() as server:
            yield server
    finally:
        undo()


@pytest.fixture
def world(iam_server: LocalAws) -> Iterator[IamWorld]:
    """A wiped endpoint enforcing IAM for the test body, with the harness user made."""
    endpoint = iam_server.endpoint_url
    _moto_api(endpoint, "reset-auth", b"inf")
    iam_server.reset()
    admin = _SESSION.client(
        "iam", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    admin.create_user(UserName="harness")
    admin.put_user_policy(
        UserName="harness", PolicyName="harness", PolicyDocument=json.dumps(ADMIN_POLICY)
    )
    key = admin.create_access_key(UserName="harness")["AccessKey"]
    harness = Principal("harness", endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    _moto_api(endpoint, "reset-auth", b"0")
    try:
        yield IamWorld(iam_server, harness)
    finally:
        _moto_api(endpoint, "reset-auth", b"inf")
