"""Region names checked before any call: a region no partition has otherwise surfaces as a
DNS failure on AWS, or as a 500 HTML page from moto."""

from __future__ import annotations

import functools
import re

import botocore.session

from transflow.errors import ConfigError

__all__ = ["check_region"]


@functools.cache
def _partitions() -> tuple[tuple[frozenset[str], re.Pattern[str]], ...]:
    # botocore's endpoint data: each partition's known regions and the pattern of its names,
    # so a region newer than this botocore still passes when it fits its partition.
    data = botocore.session.get_session().get_data("endpoints")
    return tuple(
        (frozenset(p.get("regions", {})), re.compile(p["regionRegex"])) for p in data["partitions"]
    )


def check_region(region: str, where: str = "--region") -> str:
    """``region`` when some AWS partition has (or could have) it; else a
    :class:`ConfigError` naming ``where`` it came from."""
    for known, pattern in _partitions():
        if region in known or pattern.match(region):
            return region
    raise ConfigError(
        f"{where}: {region!r} is not an AWS region (for example us-east-1 or eu-west-1; "
        "'aws ec2 describe-regions' lists them)"
    )
