"""The header every napari-sam2 JSON record starts with: its format name and version."""

from __future__ import annotations

from ..errors import InputError


def check_header(data, fmt: str, version: int, what: str, source: str) -> None:
    """Refuse ``data`` unless it is a dict of format ``fmt`` at ``version``.

    ``what`` names the record ("effort log"); ``source`` starts the one-line
    :class:`InputError` (a file or argument name).
    """
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise InputError(f"{source}: not a napari-sam2 {what}")
    if data.get("version") != version:
        raise InputError(f"{source}: {what} version {data.get('version')} not supported")
