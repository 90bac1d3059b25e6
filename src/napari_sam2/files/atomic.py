"""Writing files all or nothing: the one write-to-a-temporary-then-rename helper.

Every file napari-sam2 writes for a user (prompt CSVs, label TIFFs, the CLI's
outputs, ``session.json``, cached image features) is written to a temporary
file next to its target, on the same file system, and moved over the target
with one ``os.replace`` only when complete: a failure leaves an existing file
untouched and no temporary file behind. New files get the mode a plainly
created file would have (``0666`` less the umask), not mkstemp's private 0600.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError

__all__ = ["atomic_path", "scratch_dir", "scratch_path", "umask"]


def umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    try:  # Linux reports it without changing it; elsewhere set-and-restore.
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_mode(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode & ~umask())
    except OSError:  # pragma: no cover - e.g. file systems without modes
        pass


def _cannot_write(option: str | None, folder: Path, exc: OSError) -> None:
    if option is not None:
        raise InputError(f"{option}: cannot write in {folder} ({exc.strerror or exc})") from None
    raise exc


@contextmanager
def scratch_path(path: str | os.PathLike, suffix: str = "", *, option: str | None = None):
    """Yield a new empty file next to ``path`` (``.<name>.XXXX<suffix>.tmp``); removed at exit.

    ``option``: when given, a folder that refuses the file raises a one-line
    InputError naming it (e.g. ``"--out"``) instead of the OSError.
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent
        )
    except OSError as exc:
        _cannot_write(option, path.parent, exc)
    os.close(fd)
    tmp = Path(name)
    _plain_mode(tmp, 0o666)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", *, option: str | None = None):
    """Yield a temporary path next to ``path``; when the block succeeds it replaces ``path``.

    On any failure the temporary file is removed and ``path`` is left untouched.
    ``suffix`` and ``option`` are as in :func:`scratch_path`.
    """
    path = Path(path)
    with scratch_path(path, suffix, option=option) as tmp:
        yield tmp
        os.replace(tmp, path)


@contextmanager
def scratch_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder next to ``path`` (plain folder mode); removed at exit.

    A caller that moves it onto ``path`` with ``os.replace`` gets a folder that
    appears complete in one rename.
    """
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    _plain_mode(tmp, 0o777)  # mkdtemp's 0700 would stick to a new folder
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
