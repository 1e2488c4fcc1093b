"""The browser client's files, shipped in the wheel as package data: ``transflow.js`` (a
dependency-free ES module: uploads by presigned POST or S3 multipart, progress over SSE) and
``transflow.d.ts`` (its TypeScript declarations).

A host serves them from a route of its own (:func:`web_asset` gives the bytes and the
content type) or mounts the directory (:func:`web_static_dir`). docs/browser.md shows both.
No web framework is imported here, and nothing is read until asked for.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

import attrs

from transflow.errors import WebAssetNotFoundError

__all__ = ["WEB_ASSETS", "WebAsset", "web_asset", "web_static_dir"]

_CONTENT_TYPES: Final = {
    # Browsers run a module script only when it is served with a JavaScript MIME type.
    "transflow.js": "text/javascript; charset=utf-8",
    "transflow.d.ts": "application/typescript; charset=utf-8",
}
WEB_ASSETS: Final = tuple(_CONTENT_TYPES)
"""The names :func:`web_asset` serves."""


@attrs.frozen
class WebAsset:
    """One file of the browser client: its name, bytes and ``Content-Type``."""

    name: str
    body: bytes = attrs.field(repr=False)
    content_type: str


def web_asset(name: str) -> WebAsset:
    """The file ``name`` (one of :data:`WEB_ASSETS`), read from the installed package.

    Raises :class:`~transflow.WebAssetNotFoundError` for any other name, so a route that
    passes a path segment through serves these files and nothing else of the package."""
    content_type = _CONTENT_TYPES.get(name)
    if content_type is None:
        raise WebAssetNotFoundError(
            f"{name!r} is not a file of the browser client; ask for one of {', '.join(WEB_ASSETS)}"
        )
    body = resources.files("transflow.web").joinpath("static").joinpath(name).read_bytes()
    return WebAsset(name, body, content_type)


def web_static_dir() -> Path:
    """The directory holding the browser client's files, to mount as static files (for
    example Starlette's ``StaticFiles(directory=...)``). Raises
    :class:`~transflow.WebAssetNotFoundError` when the package is not installed as files
    on disk (a zip import); serve :func:`web_asset` from a route then."""
    folder = resources.files("transflow.web").joinpath("static")
    if not isinstance(folder, Path) or not folder.is_dir():
        raise WebAssetNotFoundError(
            "transflow is not installed as files on disk, so its web client has no directory; "
            "serve transflow.web_asset(name) from a route instead"
        )
    return folder
