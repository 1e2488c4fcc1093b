"""The cancellation mark of a status record, readable without the processing room.

The bridge (``ingest``) must not import the status record's classes, yet it must not queue
a cancelled upload: it reads only the record's ``ok``. Pure: no AWS.
"""

from __future__ import annotations

import json

__all__ = ["ASSEMBLY_CANCELED", "is_canceled_record"]

ASSEMBLY_CANCELED = "ASSEMBLY_CANCELED"
"""The status record's ``ok`` once the upload was cancelled (Transloadit's spelling): the
bridge does not queue it and the processor stops before its next step."""


def is_canceled_record(body: bytes | str) -> bool:
    """Whether a status record's JSON says ``ok: ASSEMBLY_CANCELED`` (False for anything
    that is not such a record)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data.get("ok") == ASSEMBLY_CANCELED
