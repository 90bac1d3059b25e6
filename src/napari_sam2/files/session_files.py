"""Session folders of the widget: ``session.json`` next to the prompt files and labels.

A saved session folder holds the prompt files (:mod:`napari_sam2.files.prompt_files`),
``labels.tif`` and ``session.json`` (image, layers, model, objects). JSON only:
no torch, no Qt.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import InputError, one_line
from .atomic import atomic_path

SESSION_VERSION = 1
SESSION_FILE = "session.json"
LABELS_FILE = "labels.tif"


def default_session_folder(image_path: str | None, layer_name: str) -> Path:
    """``<image dir>/<layer>_sam2_session`` when the image came from a file, else the cache."""
    safe = re.sub(r"[^\w.-]+", "_", layer_name).strip("_.") or "image"
    if image_path:
        return Path(image_path).expanduser().resolve().parent / f"{safe}_sam2_session"
    from ..weights.registry import cache_dir

    return cache_dir() / "sessions" / f"{safe}_sam2_session"


def read_session_json(folder: str | os.PathLike) -> dict:
    """The parsed ``session.json`` of a session folder; InputError if missing or unreadable."""
    path = Path(folder) / SESSION_FILE
    if not path.is_file():
        raise InputError(f"session: {folder} holds no {SESSION_FILE}; not a napari-sam2 session")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"session: cannot read {path}: {one_line(exc)}") from exc
    if not isinstance(meta, dict) or "objects" not in meta:
        raise InputError(f"session: {path} is not a napari-sam2 session file")
    return meta


def session_id_of(folder: str | os.PathLike) -> str | None:
    """The id stored in a folder's session.json, or None when there is none."""
    try:
        return str(read_session_json(folder).get("session_id") or "") or None
    except InputError:
        return None


def free_folder(folder: Path, current_id: str) -> Path:
    """``folder``, or ``folder_2``, ``folder_3``... : the first that is new, empty or this session.

    A folder holding another session, or any files of the user's, is skipped.
    """
    candidate, n = folder, 1
    while not _free_for(candidate, current_id):
        n += 1
        candidate = folder.with_name(f"{folder.name}_{n}")
    return candidate


def _free_for(folder: Path, current_id: str) -> bool:
    if not folder.exists():
        return True
    if not folder.is_dir():
        return False
    if (folder / SESSION_FILE).exists():
        return session_id_of(folder) == current_id
    return not any(folder.iterdir())


def write_session_json(folder: Path, meta: dict) -> Path:
    """Write ``meta`` as the folder's ``session.json`` (atomically); returns its path."""
    path = folder / SESSION_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return path
