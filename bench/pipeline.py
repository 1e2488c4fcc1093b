"""The pieces of a pipeline the benchmarks and the soak share: queues and buckets on the
endpoint, the templates they run, uploads put where a browser would put them, and the
event source mapping's loop (ReceiveMessage → ``processor.handle`` → DeleteMessageBatch)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from bench.common import fifo_queue, lambda_event, s3_created_record
from transflow import (
    JobProcessor,
    StepContext,
    TemplateRegistry,
    UploadFile,
    UploadTicket,
    create_upload,
)
from transflow._aws.sqs_batch import delete_batch

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("bench")

UPLOADS = "bench-uploads"
OUTPUTS = "bench-outputs"
BRANCH = "main"
META_PREFIX = "x-amz-meta-"
HUB_WAIT = 5
"""The benches' hubs long-poll 5 s (20 in production) so that stopping one is quick; empty
receives are reported apart from the work anyway."""


@attrs.frozen
class Queues:
    processing: str
    progress: str
    dlq: str


def make_queues(
    sqs: SQSClient, *, prefix: str = "bench", visibility: int = 60, max_receive_count: int = 3
) -> Queues:
    """The three FIFO queues of a branch: DLQ, processing (redriving to it), progress."""
    dlq = fifo_queue(sqs, f"{prefix}-main-dlq.fifo")
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    processing = fifo_queue(
        sqs,
        f"{prefix}-main-processing.fifo",
        VisibilityTimeout=str(visibility),
        RedrivePolicy=json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
        ),
    )
    progress = fifo_queue(sqs, f"{prefix}-main-progress.fifo")
    return Queues(processing, progress, dlq)


def make_buckets(s3: S3Client, *, versioned_outputs: bool = False) -> None:
    s3.create_bucket(Bucket=UPLOADS)
    s3.create_bucket(Bucket=OUTPUTS)
    if versioned_outputs:
        # Every write of an output is a version: "written once" is then countable.
        s3.put_bucket_versioning(Bucket=OUTPUTS, VersioningConfiguration={"Status": "Enabled"})


def processor_packing(pack_events: bool) -> dict[str, Any]:
    """``JobProcessor`` options for ``--pack-events``, given explicitly both ways (the trees a
    bench compares may differ in their default); none where the tree's processor has no such
    option (an older checkout run with ``--against``)."""
    if "pack_events" not in attrs.fields_dict(JobProcessor):
        return {}
    return {"pack_events": pack_events}


# -- templates ----------------------------------------------------------------------------


def register_checksum(
    registry: TemplateRegistry,
    *,
    template_id: str = "checksum",
    before_output: Callable[[StepContext], None] | None = None,
) -> None:
    """One step that does real work: hashes every input (a progress event per file) and
    writes one manifest of the digests. ``before_output`` runs just before the manifest is
    written (the soak makes jobs slow or crash there)."""
    template = registry.template(template_id, output_bucket=OUTPUTS)

    @template.step("checksum")
    def checksum(ctx: StepContext) -> None:
        digests: dict[str, str] = {}
        for index, item in enumerate(ctx.inputs):
            digests[item.name] = hashlib.sha256(item.path.read_bytes()).hexdigest()
            ctx.progress(100 * (index + 1) / len(ctx.inputs), item.name)
        if before_output is not None:
            before_output(ctx)
        manifest = ctx.path("manifest.json")
        manifest.write_text(json.dumps(digests, sort_keys=True))
        ctx.upload_result(manifest, "manifest.json")


def register_noop(registry: TemplateRegistry, template_id: str = "noop") -> None:
    """One step that does nothing: what is left is transflow's own cost."""
    template = registry.template(template_id, output_bucket=OUTPUTS)

    @template.step("noop")
    def noop(ctx: StepContext) -> None:
        return None


# -- uploads ------------------------------------------------------------------------------


def ticket(
    s3_signer: S3Client, template_id: str, files: Sequence[str], upload_id: str | None = None
) -> UploadTicket:
    """A real create_upload ticket (signing is local: no request)."""
    return create_upload(
        s3_signer,
        bucket=UPLOADS,
        branch=BRANCH,
        template_id=template_id,
        files=[UploadFile(name, "application/octet-stream") for name in files],
        upload_id=upload_id,
    )


def put_ticket_file(s3: S3Client, upload: UploadTicket, index: int, body: bytes) -> str:
    """Upload one file of the ticket as the browser's POST would (same key and metadata);
    return the notification record's sequencer."""
    file = upload.files[index]
    metadata = {
        k[len(META_PREFIX) :]: v for k, v in file.fields.items() if k.startswith(META_PREFIX)
    }
    response = s3.put_object(Bucket=UPLOADS, Key=file.key, Body=body, Metadata=metadata)
    return str(response.get("ETag", "")).strip('"') + f"{index:08x}"


def created_event(
    upload: UploadTicket, indexes: Sequence[int], sequencers: Sequence[str]
) -> dict[str, Any]:
    """A direct S3 notification event for files of an upload."""
    return {
        "Records": [
            s3_created_record(UPLOADS, upload.files[i].key, seq)
            for i, seq in zip(indexes, sequencers, strict=True)
        ]
    }


# -- the event source mapping -------------------------------------------------------------


class LambdaHandler(Protocol):
    def handle(self, event: Mapping[str, Any]) -> Mapping[str, Any]: ...


@attrs.define(eq=False)
class EventSourceLoop:
    """What Lambda's SQS event source mapping does for the processor: receive a batch of up
    to ten, invoke ``processor.handle`` with it, delete the records that did not fail.

    Runs ``threads`` pollers until :meth:`stop`."""

    sqs: SQSClient
    queue_url: str
    processor: JobProcessor | LambdaHandler
    threads: int = 2
    wait_seconds: int = 1
    handled: int = 0
    failed: int = 0
    batches: int = 0
    _stop: threading.Event = attrs.field(factory=threading.Event)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    _workers: list[threading.Thread] = attrs.field(factory=list)

    def start(self) -> EventSourceLoop:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, name=f"esm-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> None:
        """Stop polling and wait for the long polls in flight to come back (at most
        ``wait_seconds`` and a margin): a request counter read while one is in flight
        counts it as a receive that brought messages (it is told a receive was empty only
        when it returns), which added up to one receive per thread to the event source's
        figures."""
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self.wait_seconds + 10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=self.wait_seconds,
                    MessageSystemAttributeNames=["All"],
                ).get("Messages", [])
            except Exception:
                if not self._stop.is_set():
                    log.exception("esm: receive failed")
                continue
            if not messages:
                continue
            response = self.processor.handle(lambda_event(messages))
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            done = [
                (m["MessageId"], m["ReceiptHandle"])
                for m in messages
                if m["MessageId"] not in failed
            ]
            if done:
                delete_batch(self.sqs, self.queue_url, done)
            with self._lock:
                self.batches += 1
                self.handled += len(done)
                self.failed += len(failed)


@attrs.define(eq=False)
class Drain:
    """Receives and deletes whatever reaches a queue, in batches, calling ``on_body`` with
    each body: keeps a queue shallow where nothing else consumes it."""

    sqs: SQSClient
    queue_url: str
    on_body: Callable[[str], None] = lambda _body: None
    wait_seconds: int = 1
    received: int = 0
    _stop: threading.Event = attrs.field(factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Drain:
        self._thread = threading.Thread(target=self._run, name="drain", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop draining (the thread ends after its long poll in flight)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=self.wait_seconds,
                ).get("Messages", [])
            except Exception:
                if not self._stop.is_set():
                    log.exception("drain: receive failed")
                continue
            for message in messages:
                self.on_body(message["Body"])
            if messages:
                delete_batch(
                    self.sqs,
                    self.queue_url,
                    [(m["MessageId"], m["ReceiptHandle"]) for m in messages],
                )
                self.received += len(messages)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
