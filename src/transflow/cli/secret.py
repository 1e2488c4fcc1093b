"""``transflow secret``: print a fresh stream secret, or the steps that rotate the current one."""

from __future__ import annotations

import argparse
import os
import secrets

from transflow._wire.tokens import ENV_STREAM_SECRET, MAX_TOKEN_TTL, check_stream_secret
from transflow.cli.app import EXIT_OK, Context, command
from transflow.errors import ConfigError

__all__ = ["new_stream_secret"]


def new_stream_secret() -> str:
    """32 random bytes as URL-safe base64 (43 characters): passes every check of
    :func:`transflow._wire.tokens.secret_problem` and holds no comma (the list separator)."""
    return secrets.token_urlsafe(32)


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rotate",
        action="store_true",
        help=f"print the three values of {ENV_STREAM_SECRET} that replace the current one "
        "without cutting live streams (docs/security.md)",
    )


@command(
    "secret",
    help=f"print a new random stream secret for {ENV_STREAM_SECRET}",
    configure=_configure,
    connection=(),
)
def secret_command(ctx: Context) -> int:
    fresh = new_stream_secret()
    if not ctx.args.rotate:
        # The secret alone on stdout, so `export TRANSFLOW_STREAM_SECRET=$(transflow secret)`
        # works; the advice goes to stderr.
        ctx.out.write(fresh + "\n")
        ctx.note(
            f"transflow secret: set it in {ENV_STREAM_SECRET} on every server that issues or "
            "checks stream tokens; keep it out of files you commit"
        )
        return EXIT_OK
    current = os.environ.get(ENV_STREAM_SECRET) or ""
    if not current:
        raise ConfigError(
            f"--rotate replaces the secret in {ENV_STREAM_SECRET}, which is not set here; "
            "run it where the current secret is set, or run 'transflow secret' for a first one"
        )
    old = current.split(",")[0].strip()
    try:
        check_stream_secret(old)
    except ConfigError as exc:
        # Nothing can verify with it any more, so there is nothing to keep: replace it.
        ctx.out.write(f"{ENV_STREAM_SECRET}={fresh}\n")
        ctx.note(
            f"transflow secret: the current secret is refused ({exc}); set the new one "
            "everywhere at once: browsers holding old tokens must ask their host for fresh ones"
        )
        return EXIT_OK
    ctx.out.write(
        f"# 1. everywhere: verify with the new secret too (tokens are still signed with the "
        f"old one)\n{ENV_STREAM_SECRET}={old},{fresh}\n"
        f"# 2. once every server has step 1: sign with the new one\n"
        f"{ENV_STREAM_SECRET}={fresh},{old}\n"
        f"# 3. once the longest-lived token signed with the old one has expired (at most "
        f"{MAX_TOKEN_TTL} s after step 2): drop the old one\n"
        f"{ENV_STREAM_SECRET}={fresh}\n"
    )
    return EXIT_OK
