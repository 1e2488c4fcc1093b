"""The bridge's memory of upload metadata, and the records a listing does not hold."""

from __future__ import annotations

from transflow.ingest.grouping import HeadedRecord, ListedObject, UploadCheck, unlisted_records
from transflow.ingest.known_uploads import KnownUploads, upload_folder
from transflow.ingest.metadata import UploadMetadata
from transflow.ingest.s3events import S3Record

META = UploadMetadata("t", upload_id="u1", file_count=2)


def headed(key: str, *, was_headed: bool) -> HeadedRecord:
    record = S3Record(f"ref-{key}", "b", key, "ObjectCreated:Put")
    return HeadedRecord(record, META, "e" if was_headed else None, headed=was_headed)


def test_upload_folder() -> None:
    assert upload_folder("uploads/main/u1/a.wav") == "uploads/main/u1/"
    assert upload_folder("a.wav") is None
    assert upload_folder("/a.wav") is None


def test_known_uploads_forget_the_least_recently_used() -> None:
    known = KnownUploads(2)
    known.remember("b", "f1/", META)
    known.remember("b", "f2/", META)
    assert known.get("b", "f1/") == META  # f1 used: f2 is now the oldest
    known.remember("b", "f3/", META)
    assert known.get("b", "f2/") is None
    assert known.get("b", "f1/") == META
    assert known.get("other", "f1/") is None
    assert len(known) == 2


def test_a_forgotten_upload_is_unknown() -> None:
    known = KnownUploads(2)
    known.remember("b", "f1/", META)
    known.forget("b", "f1/")
    known.forget("b", "never/")
    assert known.get("b", "f1/") is None


def test_known_uploads_of_size_zero_remember_nothing() -> None:
    known = KnownUploads(0)
    known.remember("b", "f/", META)
    assert known.get("b", "f/") is None


def test_unheaded_records_missing_from_the_listing_fail_alone() -> None:
    records = (
        headed("uploads/main/u1/a.wav", was_headed=False),
        headed("uploads/main/u1/b.wav", was_headed=False),
        headed("uploads/main/u1/c.wav", was_headed=True),
    )
    check = UploadCheck("b", "uploads/main/u1/", 2, records)
    kept, failed = unlisted_records(check, [ListedObject("uploads/main/u1/a.wav", "e")])
    assert [f.key for f in failed] == ["uploads/main/u1/b.wav"]
    assert failed[0].retryable is False
    assert kept is not None
    assert [h.record.key for h in kept.records] == [
        "uploads/main/u1/a.wav",
        "uploads/main/u1/c.wav",
    ]
    none_left, all_failed = unlisted_records(
        UploadCheck("b", "uploads/main/u1/", 2, records[:2]), []
    )
    assert none_left is None
    assert len(all_failed) == 2
    unchanged, nothing = unlisted_records(check, [ListedObject(h.record.key, "e") for h in records])
    assert unchanged == check
    assert nothing == []
