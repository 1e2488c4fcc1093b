"""Reading what create_upload signed."""

from __future__ import annotations

import base64
import json
from typing import Any


def policy_of(fields: dict[str, str]) -> dict[str, Any]:
    """The POST policy document of a presigned POST's form ``fields``, decoded."""
    decoded: dict[str, Any] = json.loads(base64.b64decode(fields["policy"]))
    return decoded
