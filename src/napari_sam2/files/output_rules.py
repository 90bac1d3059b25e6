"""The one rule for everything napari-sam2 writes: never destroy what the user owns.

Every command line output (``segment --out``, ``evaluate --json``) and the
widget's session save pass through these checks *before* any compute, so a
refused output costs nothing and changes nothing:

1. An output never equals, contains, or sits inside an input (the stack, the
   prompts, the checkpoint, a ground truth). Paths are compared after
   resolving links, so a symlink or a hard link to an input is refused too.
2. A result folder (Cell Tracking Challenge, and any later folder format) is
   written only when it does not exist, is empty, or holds nothing but files a
   previous result of the same kind would hold.
3. A session folder is written only when it does not exist, is empty, or
   already holds a napari-sam2 session (``session.json``); a folder of the
   user's own files is never written into.

Each check raises a one-line :class:`~napari_sam2.errors.InputError` naming the
option (``--out``, ``--json``, ``session folder``...).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from .session_files import SESSION_FILE

# Names a result folder of each format holds; anything else there is the user's.
RESULT_FILES: dict[str, re.Pattern[str]] = {
    "ctc": re.compile(r"^(mask\d{3,4}\.tif|res_track\.txt)$"),
}

# Files a napari-sam2 session folder holds (with the temporary ones of a save).
SESSION_NAMES = re.compile(
    r"^\.?(session\.json|points\.csv|boxes\.csv|mask_prompts\.tif|labels\.tif|effort\.json"
    r"|review\.json)(\.part|\..*\.tmp)?$"
)


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(
    out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], option: str = "--out"
) -> None:
    """Refuse an output path that equals, contains, or sits inside one of ``inputs``.

    ``inputs`` may hold None (absent optional inputs) and registry names that
    are not paths; those are skipped.
    """
    target = _resolved(out)
    for given in inputs:
        if given is None or not str(given):
            continue
        src = _resolved(given)
        if target == src or _same_file(target, src):
            raise InputError(f"{option}: {out} is an input ({given}); choose another output")
        if src.is_relative_to(target):
            raise InputError(
                f"{option}: {out} contains the input {given}; choose another output folder"
            )
        if target.is_relative_to(src) and src.is_dir():
            raise InputError(
                f"{option}: {out} lies inside the input folder {given}; choose a path outside it"
            )


def check_parent(out: Path, option: str = "--out") -> None:
    """The folder that will hold ``out`` exists and is writable."""
    parent = out.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise InputError(f"{option}: cannot write {out}: the folder {parent} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{option}: cannot write {out}: no write permission in {parent}")


def check_output_file(out: str | os.PathLike, inputs: Iterable = (), option: str = "--out") -> Path:
    """A single output file: not an input, not a folder, in a writable folder."""
    out = Path(out)
    check_not_input(out, inputs, option)
    check_parent(out, option)
    if out.is_dir():
        raise InputError(f"{option}: {out} is a folder; give a file name")
    return out


def foreign_entries(folder: Path, pattern: re.Pattern[str]) -> list[str]:
    """Names in ``folder`` that ``pattern`` does not recognise (sorted; [] if absent)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not pattern.match(p.name))


def check_result_folder(
    out: str | os.PathLike, kind: str, inputs: Iterable = (), option: str = "--out"
) -> Path:
    """A result folder of ``kind`` ("ctc"): new, empty, or holding only a previous result."""
    out = Path(out)
    check_not_input(out, inputs, option)
    check_parent(out, option)
    if out.exists() and not out.is_dir():
        raise InputError(f"{option}: {out} is a file; --format {kind} writes a folder")
    others = foreign_entries(out, RESULT_FILES[kind])
    if others:
        shown = ", ".join(others[:3]) + (f" (+{len(others) - 3} more)" if len(others) > 3 else "")
        raise InputError(
            f"{option}: {out} holds files that are not a {kind.upper()} result ({shown}); "
            "choose an empty or new folder"
        )
    return out


def is_session_folder(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a ``session.json`` (a napari-sam2 session)."""
    return (Path(folder) / SESSION_FILE).is_file()


def check_session_folder(
    folder: str | os.PathLike, inputs: Iterable = (), option: str = "session folder"
) -> Path:
    """A session folder: new, empty, or already a napari-sam2 session.

    Whether an existing session is *another* session (and may be overwritten
    only when the user says so) is for the caller to decide.
    """
    folder = Path(folder).expanduser()
    check_not_input(folder, inputs, option)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option}: {folder} is a file; choose a folder")
    if not folder.exists():  # created with its parents: the nearest existing one must allow it
        ancestor = folder.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise InputError(f"{option}: cannot create {folder}: {ancestor} is not a folder")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise InputError(f"{option}: cannot create {folder}: no write permission in {ancestor}")
        return folder
    if is_session_folder(folder):
        return folder
    others = foreign_entries(folder, SESSION_NAMES)
    names = sorted(p.name for p in folder.iterdir())
    if names:
        shown = ", ".join((others or names)[:3])
        raise InputError(
            f"{option}: {folder} is not empty and not a napari-sam2 session (holds {shown}); "
            "choose an empty or new folder"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{option}: cannot write {folder}: no write permission")
    return folder
