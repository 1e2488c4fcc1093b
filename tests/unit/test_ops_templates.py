"""IAM policy documents, the SAM template (checked by cfn-lint) and the YAML writer."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.support.cfn import lint_errors
from transflow import ConfigError, SqsConfig, TransflowConfig
from transflow.ops._yaml import dump
from transflow.ops.iam import CONSUME, iam_policies
from transflow.ops.sam import BridgeTrigger, SamOptions, sam_template

CONFIG = TransflowConfig(project="shop", branch="feature-checkout")
ACCOUNT = "123456789012"


def sqs_resources(document: Any) -> list[str]:
    return [
        resource
        for statement in document["Statement"]
        if any(action.startswith("sqs:") for action in statement["Action"])
        for resource in statement["Resource"]
    ]


def test_policies_name_exact_queue_arns_and_prefixes() -> None:
    policies = iam_policies(CONFIG, ACCOUNT, "eu-west-1", upload_bucket="shop-uploads")
    processing = "arn:aws:sqs:eu-west-1:123456789012:shop-feature-checkout-processing.fifo"
    progress = "arn:aws:sqs:eu-west-1:123456789012:shop-feature-checkout-progress.fifo"
    for role, document in policies.by_role().items():
        # Every document is valid JSON of the IAM shape, and SQS is never granted on "*".
        parsed = json.loads(policies.to_json(role))
        assert parsed["Version"] == "2012-10-17"
        resources = sqs_resources(parsed)
        # The uploads role (the backend that signs tickets) touches S3 only.
        assert bool(resources) == (role != "uploads"), role
        assert all(r.startswith("arn:aws:sqs:eu-west-1:123456789012:shop-") for r in resources)
        assert all("*" not in r for r in resources)
        assert parsed == document

    bridge = policies.bridge["Statement"]
    uploads = "arn:aws:sqs:eu-west-1:123456789012:shop-feature-checkout-uploads"
    bridge_sqs = {(a, r) for s in bridge for a in s["Action"] for r in s["Resource"] if "sqs" in a}
    # Jobs go out to the processing queue; S3 notifications come in from the uploads queue.
    assert bridge_sqs == {("sqs:SendMessage", processing)} | {(a, uploads) for a in CONSUME}
    assert "arn:aws:s3:::shop-uploads/uploads/feature-checkout/*" in bridge[0]["Resource"]
    assert sqs_resources(policies.stream) == [progress, progress]  # consume; the hub lease
    processor_sqs = {
        (a, r)
        for s in policies.processor["Statement"]
        for a in s["Action"]
        for r in s["Resource"]
        if a.startswith("sqs:")
    }
    assert ("sqs:SendMessage", progress) in processor_sqs
    assert ("sqs:DeleteMessage", processing) in processor_sqs
    assert ("sqs:SendMessage", processing) not in processor_sqs  # failures go via visibility
    s3 = [r for s in policies.processor["Statement"] for r in s["Resource"] if ":s3:" in r]
    assert all(r.endswith("feature-checkout/*") or r == "arn:aws:s3:::shop-uploads" for r in s3)


def test_claim_check_prefix_adds_exact_statements() -> None:
    policies = iam_policies(
        CONFIG,
        ACCOUNT,
        "us-east-1",
        upload_bucket="in-bucket",
        output_bucket="out-bucket",
        claim_check_prefix="claims/feature-checkout/",
    )
    claims = "arn:aws:s3:::out-bucket/claims/feature-checkout/*"
    assert any(
        claims in s["Resource"] and s["Action"] == ["s3:PutObject"]
        for s in policies.bridge["Statement"]
    )
    assert any(
        claims in s["Resource"] and s["Action"] == ["s3:GetObject"]
        for s in policies.processor["Statement"]
    )


def test_claim_checks_are_granted_where_the_bridge_puts_them_by_default() -> None:
    from transflow.ingest.bridge import GroupingBridge
    from transflow.ops.iam import DEFAULT_CLAIM_PREFIX

    assert attrs.fields(GroupingBridge).claim_prefix.default == DEFAULT_CLAIM_PREFIX
    policies = iam_policies(
        CONFIG, ACCOUNT, "us-east-1", upload_bucket="in-bucket", output_bucket="out-bucket"
    )
    claims = "arn:aws:s3:::in-bucket/transflow/claims/feature-checkout/*"
    granted = {
        (role, statement["Sid"], action)
        for role, document in policies.by_role().items()
        for statement in document["Statement"]
        if claims in statement["Resource"]
        for action in statement["Action"]
    }
    assert granted == {
        ("bridge", "StoreClaimChecks", "s3:PutObject"),
        ("processor", "ReadClaimChecks", "s3:GetObject"),
        ("operator", "ReadClaimChecks", "s3:GetObject"),
        ("recovery", "ReadClaimChecks", "s3:GetObject"),
    }


def test_policies_use_aws_action_names_only() -> None:
    # The IAM-enforced tests add moto's own names for batch calls (sqs:SendMessageBatch...)
    # beside the documents; AWS has no such actions, so the documents must not carry them.
    policies = iam_policies(CONFIG, ACCOUNT, "us-east-1", upload_bucket="in-bucket")
    actions = {
        action
        for document in policies.by_role().values()
        for statement in document["Statement"]
        for action in statement["Action"]
    }
    assert not {a for a in actions if a.endswith("Batch") or a.startswith("monitoring:")}
    assert "s3:HeadBucket" not in actions
    bridge = {s["Sid"]: s for s in policies.bridge["Statement"]}
    assert bridge["ListUploads"]["Resource"] == ["arn:aws:s3:::in-bucket"]
    assert bridge["ListUploads"]["Condition"] == {
        "StringLike": {"s3:prefix": ["uploads/feature-checkout/*"]}
    }
    operator = {s["Sid"]: s for s in policies.operator["Statement"]}
    assert operator["AnnounceFailedJobs"]["Resource"] == [
        "arn:aws:sqs:us-east-1:123456789012:shop-feature-checkout-progress.fifo"
    ]


@pytest.mark.parametrize(
    ("account", "region", "bucket", "expected"),
    [
        ("12345", "us-east-1", "b-1", "account id"),
        (ACCOUNT, "Mars", "b-1", "region"),
        (ACCOUNT, "us-east-1", "Bad_Bucket", "upload bucket"),
        (ACCOUNT, "us-east-1", "a", "upload bucket"),
    ],
)
def test_bad_identifiers_are_a_config_error(
    account: str, region: str, bucket: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        iam_policies(CONFIG, account, region, upload_bucket=bucket)


@given(st.text(max_size=20))
def test_any_account_text_is_accepted_only_as_twelve_digits(account: str) -> None:
    valid = len(account) == 12 and account.isascii() and account.isdigit()
    if not valid:
        with pytest.raises(ConfigError, match="account id"):
            iam_policies(CONFIG, account, "us-east-1", upload_bucket="bucket")
        return
    policies = iam_policies(CONFIG, account, "us-east-1", upload_bucket="bucket")
    assert all(account in r for r in sqs_resources(policies.processor))


def test_sam_template_passes_cfn_lint() -> None:
    text = sam_template(CONFIG, SamOptions(upload_bucket="shop-uploads", maximum_concurrency=20))
    assert lint_errors(text) == []
    template = yaml.safe_load(text)
    resources = template["Resources"]
    processing = resources["ProcessingQueue"]["Properties"]
    assert processing["QueueName"] == "shop-feature-checkout-processing.fifo"
    assert processing["FifoQueue"] is True
    assert processing["VisibilityTimeout"] == 960
    assert processing["RedrivePolicy"]["maxReceiveCount"] == 3
    event = resources["ProcessorFunction"]["Properties"]["Events"]["Jobs"]["Properties"]
    assert event["BatchSize"] == 10
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["ScalingConfig"] == {"MaximumConcurrency": 20}
    function = resources["ProcessorFunction"]["Properties"]
    assert function["Timeout"] == 160  # one sixth of the visibility timeout
    assert function["Environment"]["Variables"]["SQS_QUEUE_URL"] == {"Ref": "ProcessingQueue"}
    # S3 notifies a standard queue with its own DLQ; the bridge consumes it in batches.
    notification = resources["UploadBucket"]["Properties"]["NotificationConfiguration"]
    (to_queue,) = notification["QueueConfigurations"]
    assert to_queue["Queue"] == {"Fn::GetAtt": ["UploadsQueue", "Arn"]}
    assert to_queue["Filter"]["S3Key"]["Rules"] == [
        {"Name": "prefix", "Value": "uploads/feature-checkout/"}
    ]
    uploads = resources["UploadsQueue"]["Properties"]
    assert uploads["QueueName"] == "shop-feature-checkout-uploads"
    assert "FifoQueue" not in uploads
    assert uploads["VisibilityTimeout"] == 360  # six times the bridge's 60 s
    assert uploads["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["UploadsDeadLetterQueue", "Arn"]
    }
    bridge_event = resources["BridgeFunction"]["Properties"]["Events"]["Uploads"]
    assert bridge_event["Type"] == "SQS"
    assert bridge_event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert bridge_event["Properties"]["BatchSize"] == 100
    assert bridge_event["Properties"]["MaximumBatchingWindowInSeconds"] == 2
    bridge_role = resources["BridgeRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    consume = [s for s in bridge_role["Statement"] if "sqs:ReceiveMessage" in s["Action"]]
    assert [r["Fn::Sub"].rsplit(":", 1)[1] for s in consume for r in s["Resource"]] == [
        "shop-feature-checkout-uploads"
    ]
    # Only this bucket may send to the queue.
    (grant,) = resources["UploadsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert grant["Principal"] == {"Service": "s3.amazonaws.com"}
    assert grant["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"].endswith(":::shop-uploads")
    # Alarms: both dead-letter queues and the age of the oldest job.
    alarms = {
        name: r["Properties"]
        for name, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert {a["MetricName"] for a in alarms.values()} == {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
    }
    watched = {a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]: a for a in alarms.values()}
    assert set(watched) == {"DeadLetterQueue", "UploadsDeadLetterQueue", "ProcessingQueue"}
    assert watched["DeadLetterQueue"]["Threshold"] == 0
    assert watched["DeadLetterQueue"]["ComparisonOperator"] == "GreaterThanThreshold"
    assert watched["ProcessingQueue"]["Threshold"] == 960
    # The scheduled recovery: dlq announce and the stale-upload sweep.
    recovery = resources["RecoveryFunction"]["Properties"]
    assert recovery["Events"]["Sweep"]["Type"] == "Schedule"
    assert recovery["Environment"]["Variables"]["TRANSFLOW_STALE_UPLOAD_AGE_SEC"] == "3600"
    # Roles are explicit so SAM adds no account-wide SQS managed policy.
    assert "Policies" not in function
    role = resources["ProcessorRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    for statement in role["Statement"]:
        if any(a.startswith("sqs:") for a in statement["Action"]):
            assert all(isinstance(r, dict) and "Fn::Sub" in r for r in statement["Resource"])
            assert all("*" not in r["Fn::Sub"] for r in statement["Resource"])


def test_sam_template_with_separate_buckets_and_large_messages_passes_cfn_lint() -> None:
    config = TransflowConfig(
        project="p" * 60,
        branch="release/2024",
        sqs=SqsConfig(visibility_timeout_sec=60, max_message_bytes=1_048_576, batch_size=3),
    )
    text = sam_template(
        config,
        SamOptions(
            upload_bucket="in-bucket", output_bucket="out-bucket", claim_check_prefix="claims/"
        ),
    )
    assert lint_errors(text) == []
    resources = yaml.safe_load(text)["Resources"]
    assert "OutputBucket" in resources
    assert len(resources["BridgeFunction"]["Properties"]["FunctionName"]) <= 64
    assert resources["ProcessorFunction"]["Properties"]["Timeout"] == 10


def test_direct_s3_trigger_and_alarm_actions_pass_cfn_lint() -> None:
    text = sam_template(
        CONFIG,
        SamOptions(
            upload_bucket="shop-uploads",
            bridge_trigger="s3",
            recovery_handler=None,
            alarm_topic_arn="arn:aws:sns:us-east-1:123456789012:ops",
            queue_age_alarm_sec=300,
        ),
    )
    assert lint_errors(text) == []
    assert "a notification that fails is lost" in text
    resources = yaml.safe_load(text)["Resources"]
    assert resources["BridgeFunction"]["Properties"]["Events"]["Uploads"]["Type"] == "S3"
    assert not {"UploadsQueue", "UploadsDeadLetterQueue", "RecoveryFunction"} & set(resources)
    alarm = resources["ProcessingQueueAgeAlarm"]["Properties"]
    assert alarm["Threshold"] == 300
    assert alarm["AlarmActions"] == ["arn:aws:sns:us-east-1:123456789012:ops"]


def test_cfn_lint_really_checks_the_template() -> None:
    # The check above is only worth something if cfn-lint fails a broken template.
    text = sam_template(CONFIG, SamOptions(upload_bucket="shop-uploads"))
    broken = text.replace("VisibilityTimeout: 960", 'VisibilityTimeout: "soon"', 1)
    assert broken != text
    assert lint_errors(broken)


def test_function_timeout_above_the_visibility_timeout_is_refused() -> None:
    config = TransflowConfig(project="shop", sqs=SqsConfig(visibility_timeout_sec=60))
    with pytest.raises(ConfigError, match=r"longer than sqs\.visibilityTimeoutSec"):
        sam_template(config, SamOptions(upload_bucket="shop-uploads", function_timeout_sec=61))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"function_timeout_sec": 1000}, "from 1 to 900"),
        ({"function_timeout_sec": 901}, "from 1 to 900"),
        ({"maximum_concurrency": 1}, "maximum concurrency"),
        ({"memory_mb": 64}, "memory"),
        ({"bridge_batch_size": 50, "bridge_batching_window_sec": 0}, "batching window"),
        ({"bridge_batch_size": 0}, "bridge batch size"),
        ({"bridge_trigger": "sns"}, "bridge trigger"),
        ({"stale_upload_age_sec": 5}, "stale upload age"),
        ({"abort_incomplete_multipart_days": 0}, "abort_incomplete_multipart_days"),
        ({"upload_origins": ["https://app.example.com/page"]}, "web origin"),
    ],
)
def test_sam_template_refuses_what_lambda_refuses(kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        sam_template(CONFIG, SamOptions(upload_bucket="shop-uploads", **kwargs))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_yaml_writer_round_trips_through_a_real_parser(value: dict[str, Any]) -> None:
    assert yaml.safe_load(dump(value)) == (value or {})


FANOUT = attrs.evolve(CONFIG, sqs=attrs.evolve(CONFIG.sqs, progress_fanout="sns"))


def statements(document: Any) -> dict[str, Any]:
    return {s["Sid"]: s for s in document["Statement"]}


def test_fanout_policies_scope_the_topic_and_the_instance_queues() -> None:
    policies = iam_policies(FANOUT, ACCOUNT, "eu-west-1", upload_bucket="shop-uploads")
    topic = "arn:aws:sns:eu-west-1:123456789012:shop-feature-checkout-progress.fifo"
    instances = (
        "arn:aws:sqs:eu-west-1:123456789012:shop-feature-checkout-progress-" + "?" * 12 + ".fifo"
    )
    processor = statements(policies.processor)
    assert "PublishProgress" not in processor  # nothing reads the shared queue
    assert processor["PublishProgressToTopic"]["Action"] == ["sns:Publish"]
    assert processor["PublishProgressToTopic"]["Resource"] == [topic]
    stream = statements(policies.stream)
    assert set(stream) == {
        "ConsumeInstanceQueues",
        "ManageInstanceQueues",
        "SubscribeInstanceQueues",
        "FindTopicSubscriptions",
        "LeaveProgressTopic",
        "FindInstanceQueues",
        "ReadStatusRecords",
    }
    for sid in ("ConsumeInstanceQueues", "ManageInstanceQueues"):
        assert stream[sid]["Resource"] == [instances]
    assert "sqs:DeleteQueue" in stream["ManageInstanceQueues"]["Action"]
    assert stream["SubscribeInstanceQueues"]["Resource"] == [topic]
    # Issue 21: SQS subscriptions of instance queues only.
    assert stream["SubscribeInstanceQueues"]["Condition"] == {
        "StringEquals": {"sns:Protocol": ["sqs"]},
        "StringLike": {"sns:Endpoint": [instances]},
    }
    assert stream["ReadStatusRecords"]["Action"] == ["s3:GetObject"]
    assert stream["ReadStatusRecords"]["Resource"] == [
        "arn:aws:s3:::shop-uploads/outputs/feature-checkout/*/status.json"
    ]
    # Only what has no resource-level permissions is granted wider.
    assert stream["LeaveProgressTopic"] == {
        "Sid": "LeaveProgressTopic",
        "Effect": "Allow",
        "Action": ["sns:Unsubscribe"],
        "Resource": ["*"],
    }
    assert stream["FindInstanceQueues"]["Resource"] == ["arn:aws:sqs:eu-west-1:123456789012:*"]
    operator = statements(policies.operator)
    assert operator["SweepInstanceQueues"]["Resource"] == [instances]
    assert "sqs:CreateQueue" not in operator["SweepInstanceQueues"]["Action"]
    assert operator["ManageProgressTopic"]["Resource"] == [topic]
    # A topic the config names is granted as named.
    mine = "arn:aws:sns:eu-west-1:123456789012:someone-elses.fifo"
    named = attrs.evolve(FANOUT, sqs=attrs.evolve(FANOUT.sqs, progress_topic_arn=mine))
    named_policies = iam_policies(named, ACCOUNT, "eu-west-1", upload_bucket="shop-uploads")
    assert statements(named_policies.processor)["PublishProgressToTopic"]["Resource"] == [mine]


def test_fanout_sam_template_creates_the_topic_and_passes_its_arn() -> None:
    text = sam_template(FANOUT, SamOptions(upload_bucket="shop-uploads"))
    assert lint_errors(text) == []
    template = yaml.safe_load(text)
    topic = template["Resources"]["ProgressTopic"]["Properties"]
    assert topic["TopicName"] == "shop-feature-checkout-progress.fifo"
    assert (topic["FifoTopic"], topic["ContentBasedDeduplication"]) == (True, False)
    variables = template["Resources"]["ProcessorFunction"]["Properties"]["Environment"]
    assert variables["Variables"]["SNS_PROGRESS_TOPIC_ARN"] == {"Ref": "ProgressTopic"}
    assert template["Outputs"]["ProgressTopicArn"] == {"Value": {"Ref": "ProgressTopic"}}
    role = template["Resources"]["ProcessorRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    publish = statements(role)["PublishProgressToTopic"]["Resource"]
    assert publish == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:"
            "shop-feature-checkout-progress.fifo"
        }
    ]
    # Without fan-out mode, no topic.
    plain = yaml.safe_load(sam_template(CONFIG, SamOptions(upload_bucket="shop-uploads")))
    assert "ProgressTopic" not in plain["Resources"]
    assert "ProgressTopicArn" not in plain["Outputs"]


def test_recovery_role_grants_what_announce_and_the_sweep_call_and_no_more() -> None:
    policies = iam_policies(
        CONFIG, ACCOUNT, "us-east-1", upload_bucket="in-bucket", output_bucket="out-bucket"
    )
    queue = "arn:aws:sqs:us-east-1:123456789012:shop-feature-checkout-"
    granted = {
        (statement["Sid"], action, resource)
        for statement in policies.recovery["Statement"]
        for action in statement["Action"]
        for resource in statement["Resource"]
    }
    status = "arn:aws:s3:::out-bucket/outputs/feature-checkout/*/status.json"
    assert granted == {
        ("PeekDeadLetters", "sqs:ReceiveMessage", f"{queue}dlq.fifo"),
        ("PeekDeadLetters", "sqs:ChangeMessageVisibility", f"{queue}dlq.fifo"),
        ("PeekDeadLetters", "sqs:GetQueueAttributes", f"{queue}dlq.fifo"),
        ("AnnounceErrors", "sqs:SendMessage", f"{queue}progress.fifo"),
        ("ListUploads", "s3:ListBucket", "arn:aws:s3:::in-bucket"),
        ("ReadUploads", "s3:GetObject", "arn:aws:s3:::in-bucket/uploads/feature-checkout/*"),
        (
            "ReadClaimChecks",
            "s3:GetObject",
            "arn:aws:s3:::in-bucket/transflow/claims/feature-checkout/*",
        ),
        ("ListOwnOutputs", "s3:ListBucket", "arn:aws:s3:::out-bucket"),
        # Status records only: the recovery never writes a job's outputs.
        ("WriteStatusRecords", "s3:GetObject", status),
        ("WriteStatusRecords", "s3:PutObject", status),
    }


@pytest.mark.parametrize("trigger", ["queue", "s3"])
def test_sam_roles_are_the_iam_policy_documents(trigger: BridgeTrigger) -> None:
    # One source of truth: the template's roles are what `transflow iam-policy` prints, with
    # the account, region and partition left to CloudFormation.
    text = sam_template(
        CONFIG,
        SamOptions(upload_bucket="in-bucket", output_bucket="out-bucket", bridge_trigger=trigger),
    )
    resources = yaml.safe_load(text)["Resources"]
    policies = iam_policies(
        CONFIG, ACCOUNT, "us-east-1", upload_bucket="in-bucket", output_bucket="out-bucket"
    )

    def deployed(role: str) -> Any:
        (policy,) = resources[role]["Properties"]["Policies"]
        placeholders = {
            "${AWS::Partition}": "aws",
            "${AWS::Region}": "us-east-1",
            "${AWS::AccountId}": ACCOUNT,
        }
        text = json.dumps(policy["PolicyDocument"])
        for placeholder, value in placeholders.items():
            text = text.replace(placeholder, value)
        document = json.loads(text)
        for statement in document["Statement"]:
            statement["Resource"] = [
                r["Fn::Sub"] if isinstance(r, dict) else r for r in statement["Resource"]
            ]
        return document

    bridge = dict(policies.bridge)
    if trigger == "s3":  # no uploads queue to consume
        bridge["Statement"] = [
            s for s in policies.bridge["Statement"] if s["Sid"] != "ConsumeUploadNotifications"
        ]
    assert deployed("BridgeRole") == bridge
    assert deployed("ProcessorRole") == policies.processor
    assert deployed("RecoveryRole") == policies.recovery


def test_sam_options_name_every_malformed_bucket_and_prefix_at_once() -> None:
    # Checked on the options themselves: no IAM documents are built to find out.
    with pytest.raises(ConfigError) as caught:
        SamOptions(upload_bucket="Up_Loads", output_bucket="o", claim_check_prefix="claims/*")
    message = str(caught.value)
    assert "upload bucket 'Up_Loads' is not an S3 bucket name" in message
    assert "output bucket 'o' is not an S3 bucket name" in message
    assert "claim check prefix 'claims/*' must be a plain key prefix" in message


def test_the_uploads_role_reaches_only_the_branch_upload_prefix() -> None:
    policies = iam_policies(CONFIG, ACCOUNT, "eu-west-1", upload_bucket="shop-uploads")
    statements = {s["Sid"]: s for s in policies.uploads["Statement"]}
    assert set(statements) == {"SignUploads", "ManageMultipartUploads", "CheckCompletedUploads"}
    for statement in statements.values():
        assert statement["Resource"] == ["arn:aws:s3:::shop-uploads/uploads/feature-checkout/*"]
    assert statements["ManageMultipartUploads"]["Action"] == [
        "s3:ListMultipartUploadParts",
        "s3:AbortMultipartUpload",
    ]


def test_the_upload_bucket_aborts_incomplete_multipart_uploads_and_allows_part_puts() -> None:
    options = SamOptions(
        upload_bucket="shop-uploads",
        abort_incomplete_multipart_days=2,
        upload_origins=["https://app.example.com"],
    )
    text = sam_template(CONFIG, options)
    assert lint_errors(text) == []
    bucket = yaml.safe_load(text)["Resources"]["UploadBucket"]["Properties"]
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}
    assert rule["Status"] == "Enabled"
    (cors,) = bucket["CorsConfiguration"]["CorsRules"]
    assert "PUT" in cors["AllowedMethods"]
    assert cors["ExposedHeaders"] == ["ETag"]
    default = yaml.safe_load(sam_template(CONFIG, SamOptions(upload_bucket="shop-uploads")))
    properties = default["Resources"]["UploadBucket"]["Properties"]
    assert properties["LifecycleConfiguration"]["Rules"][0]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }
    assert "CorsConfiguration" not in properties
