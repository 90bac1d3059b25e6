"""The official SAM 2 checkpoints, the local cache, and a resumable download.

The registry is a constant: one frozen :class:`CheckpointEntry` per official
checkpoint. Files are cached under :func:`cache_dir` (the platform's user cache
folder, or ``$NAPARI_SAM2_CACHE``) as ``<name>.pt``.

:func:`download` uses the standard library only. It writes to ``<name>.pt.part``,
resumes that file with an HTTP ``Range`` request, checks size, sha256 and (through a
``verify`` hook) structure, and only then renames it to ``<name>.pt``: a file under
the final name is always a verified one, so a cache hit needs no network and no
re-check. This module knows nothing of models: :mod:`napari_sam2.weights.loading`
passes its structural check as the hook (loading imports the registry, never the
other way round).

Tests (or mirrors) point a download elsewhere with ``download(name, url=...)``, or
pass their own :class:`CheckpointEntry` instead of a name; nothing global changes.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import CheckpointError, DownloadError, one_line

__all__ = [
    "CACHE_ENV",
    "REGISTRY",
    "CheckpointEntry",
    "cache_dir",
    "cache_state",
    "checkpoint_path",
    "download",
    "get_entry",
    "known_names",
    "resolve_checkpoint",
]

#: Environment variable that overrides the cache folder.
CACHE_ENV = "NAPARI_SAM2_CACHE"

_APP = "napari-sam2"
_CHUNK = 1 << 20  # 1 MiB: few syscalls, and a progress callback rate a GUI can take.

ProgressCallback = Callable[[int, "int | None"], Any]
VerifyHook = Callable[[Path], Any]


@dataclass(frozen=True)
class CheckpointEntry:
    """One downloadable checkpoint.

    ``size`` (bytes) and ``sha256`` (lower-case hex) are ``None`` when no source
    could confirm them; a download then skips that check.
    """

    name: str
    url: str
    size: int | None
    sha256: str | None
    variant: str
    release: str
    licence: str = "Apache-2.0"

    @property
    def filename(self) -> str:
        """The file name in the cache folder."""
        return f"{self.name}.pt"


_SAM2_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/072824"
_SAM21_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"


def _official(base: str, release: str, name: str, size: int, sha256: str) -> CheckpointEntry:
    return CheckpointEntry(
        name=name, url=f"{base}/{name}.pt", size=size, sha256=sha256, variant=name, release=release
    )


# Where the numbers come from (no file was downloaded to get them):
#
# sha256 -- tied to these exact dl.fbaipublicfiles.com URLs by
#   computational-cell-analytics/micro-sam, micro_sam/v2/util.py (URLS / HASHES,
#   fetched with pooch.retrieve(url, known_hash=...), so a mismatch would fail there),
#   and for the two SAM 2 tiny/small files also by 3D Slicer's SAM-2 extension
#   (downloadFileIntoCache(<fbaipublicfiles url>, checksum="SHA256:...")). The same
#   digests are the Git LFS oids of Meta's Hugging Face copies (facebook/sam2-hiera-*
#   and facebook/sam2.1-hiera-*, "Git LFS Details" on each file page), so the HF
#   files and these URLs hold identical bytes.
#
# size -- the "size" line of a Git LFS pointer whose "oid sha256:" is the digest
#   above (same digest, same bytes, same length):
#   sam2_hiera_tiny       huggingface.co/facebook/sam2-hiera-tiny commit a8e4b46
#   sam2_hiera_base_plus  huggingface.co/merve/sam2-hiera-base-plus commit 838f027
#   sam2_hiera_large      huggingface.co/merve/sam2-hiera-large commit 9551b5a
#   sam2.1_hiera_*        huggingface.co/camenduru/sam2-1-hiera commit cdd35a4
#                         (tiny and base_plus also Promethe-us/sam2 commit d105770)
#   sam2_hiera_small      no LFS pointer found; 184309650 is the size that public
#                         download scripts check together with the sha256 above for
#                         the dl.fbaipublicfiles.com URL (fail-closed size + hash check).
#   Every size also appears in independent scripts that verify the dl.fbaipublicfiles
#   URLs by byte count.
_ENTRIES = (
    _official(
        _SAM2_BASE,
        "SAM 2",
        "sam2_hiera_tiny",
        155906050,
        "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125",
    ),
    _official(
        _SAM2_BASE,
        "SAM 2",
        "sam2_hiera_small",
        184309650,
        "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3",
    ),
    _official(
        _SAM2_BASE,
        "SAM 2",
        "sam2_hiera_base_plus",
        323493298,
        "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071",
    ),
    _official(
        _SAM2_BASE,
        "SAM 2",
        "sam2_hiera_large",
        897952466,
        "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b",
    ),
    _official(
        _SAM21_BASE,
        "SAM 2.1",
        "sam2.1_hiera_tiny",
        156008466,
        "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
    ),
    _official(
        _SAM21_BASE,
        "SAM 2.1",
        "sam2.1_hiera_small",
        184416285,
        "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
    ),
    _official(
        _SAM21_BASE,
        "SAM 2.1",
        "sam2.1_hiera_base_plus",
        323606802,
        "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
    ),
    _official(
        _SAM21_BASE,
        "SAM 2.1",
        "sam2.1_hiera_large",
        898083611,
        "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
    ),
)

#: Name -> entry, read-only.
REGISTRY: Mapping[str, CheckpointEntry] = MappingProxyType({e.name: e for e in _ENTRIES})


# --------------------------------------------------------------------------- lookup


def known_names() -> tuple[str, ...]:
    """The registry names, in release order."""
    return tuple(REGISTRY)


def get_entry(name: str) -> CheckpointEntry:
    """The registry entry called ``name``; :class:`CheckpointError` if there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise CheckpointError(
            f"unknown checkpoint name {name!r}; known names: {', '.join(REGISTRY)}"
        ) from None


# --------------------------------------------------------------------------- cache


def platform_cache_root(
    platform: str | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Path:
    """The per-user cache folder of this application, following each OS's convention.

    Linux and other Unix: ``$XDG_CACHE_HOME/napari-sam2`` (default ``~/.cache``);
    macOS: ``~/Library/Caches/napari-sam2``; Windows:
    ``%LOCALAPPDATA%\\napari-sam2\\Cache``. Arguments exist for tests only.
    """
    platform = sys.platform if platform is None else platform
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if platform.startswith("win"):
        local = env.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(local) / _APP / "Cache"
    if platform == "darwin":
        return home / "Library" / "Caches" / _APP
    # XDG says a relative XDG_CACHE_HOME is invalid and must be ignored.
    xdg = env.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".cache"
    return base / _APP


def cache_dir() -> Path:
    """Where checkpoints are cached: ``$NAPARI_SAM2_CACHE`` if set, else the platform's."""
    override = os.environ.get(CACHE_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    return platform_cache_root()


def checkpoint_path(name: str | CheckpointEntry, cache_dir: Path | str | None = None) -> Path:
    """The path a checkpoint has (or will have) in the cache. Touches nothing."""
    entry = _as_entry(name)
    return _cache_folder(cache_dir) / entry.filename


def cache_state(cache_dir: Path | str | None = None) -> list[tuple[CheckpointEntry, Path, bool]]:
    """``(entry, path, present)`` for every registry entry, for a models listing."""
    folder = _cache_folder(cache_dir)
    return [(e, folder / e.filename, (folder / e.filename).is_file()) for e in REGISTRY.values()]


def _cache_folder(folder: Path | str | None) -> Path:
    # Named differently from the public cache_dir() so parameters may shadow it.
    return cache_dir() if folder is None else Path(folder).expanduser()


def _as_entry(name: str | CheckpointEntry) -> CheckpointEntry:
    return name if isinstance(name, CheckpointEntry) else get_entry(name)


# --------------------------------------------------------------------------- download


class _Failure(Exception):
    """Internal: why a download failed, and whether the ``.part`` file stays for a resume."""

    def __init__(self, reason: str, *, keep_part: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.keep_part = keep_part


class _RestartFromZero(Exception):
    """Internal: the server's answer to a Range request cannot extend the ``.part`` file."""


def download(
    name: str | CheckpointEntry,
    *,
    cache_dir: Path | str | None = None,
    progress: ProgressCallback | None = None,
    url: str | None = None,
    timeout: float = 30,
    verify: VerifyHook | None = None,
) -> Path:
    """Fetch a checkpoint into the cache and return its path.

    ``name`` is a registry name or a :class:`CheckpointEntry` (for a custom file).
    ``url`` replaces the entry's URL, keeping its size and sha256 (a mirror of the
    same file). ``progress(done_bytes, total_bytes)`` is called as data arrives;
    ``total_bytes`` is ``None`` when unknown; an exception raised by ``progress``
    cancels the download and propagates, keeping the ``.part`` file. ``timeout``
    (seconds) bounds the connection and each read. ``verify(path)`` runs on the
    complete, size- and hash-checked file before it gets its final name and must
    raise if the file is unusable; ``None`` (the default) skips it. Use
    :func:`napari_sam2.weights.loading.download_checkpoint` for a structural check.

    A file already at the final path is returned at once, with no network access.
    An interrupted download leaves ``<file>.part``, which the next call resumes.
    Any failure raises :class:`DownloadError` with a one-line message; a file that
    fails a check is deleted.
    """
    entry = _as_entry(name)
    source = url or entry.url
    target = checkpoint_path(entry, cache_dir)
    if target.is_file():
        return target
    part = target.with_name(target.name + ".part")

    def fail(reason: str) -> DownloadError:
        return DownloadError(_message(entry.name, source, target, reason))

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _fetch(source, part, entry.size, timeout, progress)
        _check_size(part, entry.size)
        _check_sha256(part, entry.sha256)
        _run_verify(part, verify)
        os.replace(part, target)
    except _Failure as exc:
        if not exc.keep_part:
            part.unlink(missing_ok=True)
        raise fail(exc.reason) from exc
    except OSError as exc:  # local disk: cache folder not writable, disk full...
        raise fail(f"cannot write the file ({one_line(exc)})") from exc
    return target


def _fetch(
    url: str, part: Path, expected: int | None, timeout: float, progress: ProgressCallback | None
) -> None:
    """Bring ``part`` to the full length of the remote file, resuming what is there."""
    have = part.stat().st_size if part.exists() else 0
    if expected is not None and have > expected:
        have = _discard(part)  # longer than the real file: cannot be a prefix of it
    if expected is not None and have == expected:
        return  # a previous run got every byte but stopped before verifying
    try:
        _transfer(url, part, have, expected, timeout, progress)
    except _RestartFromZero:
        _transfer(url, part, _discard(part), expected, timeout, progress)


def _discard(part: Path) -> int:
    part.unlink(missing_ok=True)
    return 0


def _transfer(
    url: str,
    part: Path,
    have: int,
    expected: int | None,
    timeout: float,
    progress: ProgressCallback | None,
) -> None:
    """One HTTP request: append to ``part`` from byte ``have`` (0: write it anew)."""
    headers = {"User-Agent": f"{_APP} (python urllib)"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            raise _RestartFromZero from exc  # our partial file does not fit the remote one
        raise _Failure(f"HTTP {exc.code} {exc.reason}", keep_part=True) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Failure(_network_reason(exc, timeout), keep_part=True) from exc

    with response:
        status = getattr(response, "status", None) or 200
        if have and status == 206:
            if _content_range_start(response.headers.get("Content-Range")) != have:
                raise _RestartFromZero
            mode = "ab"
        else:
            # 200 to a Range request: the server sends the whole file again.
            have, mode = 0, "wb"
        length = _content_length(response.headers.get("Content-Length"))
        total = have + length if length is not None else expected
        _stream(response, part, mode, have, total, timeout, progress)


def _stream(
    response: Any,
    part: Path,
    mode: str,
    done: int,
    total: int | None,
    timeout: float,
    progress: ProgressCallback | None,
) -> None:
    if progress is not None:
        progress(done, total)
    with open(part, mode) as out:
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                out.flush()
                raise _Failure(
                    f"connection lost after {done} of {_fmt_total(total)} bytes "
                    f"({_network_reason(exc, timeout)}); run it again to resume",
                    keep_part=True,
                ) from exc
            if not chunk:
                break
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if total is not None and done < total:
        raise _Failure(
            f"connection closed after {done} of {total} bytes; run it again to resume",
            keep_part=True,
        )


def _check_size(part: Path, expected: int | None) -> None:
    got = part.stat().st_size
    if expected is not None and got != expected:
        raise _Failure(f"size mismatch: got {got} bytes, expected {expected}", keep_part=False)


def _check_sha256(part: Path, expected: str | None) -> None:
    if expected is None:
        return
    digest = hashlib.sha256()
    with open(part, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    got = digest.hexdigest()
    if got != expected.lower():
        raise _Failure(f"sha256 mismatch: got {got}, expected {expected}", keep_part=False)


def _run_verify(part: Path, verify: VerifyHook | None) -> None:
    if verify is None:
        return
    try:
        verify(part)
    except Exception as exc:  # the hook may raise anything
        raise _Failure(
            f"the file is not a usable SAM 2 checkpoint ({one_line(exc)})", keep_part=False
        ) from exc


# --------------------------------------------------------------------------- messages


def _message(name: str, url: str, target: Path, reason: str) -> str:
    return one_line(
        f"could not download {name} from {url} to {target}: {reason}. "
        f"Download it by hand and place it at {target}, or pass a local .pt path."
    )


def _network_reason(exc: BaseException, timeout: float) -> str:
    """A short human reason for a network error, naming the likely cause."""
    cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused (offline?)"
    if isinstance(cause, socket.gaierror):
        return "host name not found (offline?)"
    if isinstance(cause, TimeoutError):
        return f"no answer within {timeout:g} s (offline or very slow network?)"
    if isinstance(cause, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(cause, http.client.IncompleteRead):
        return "the server closed the connection early"
    return one_line(cause)


def _fmt_total(total: int | None) -> str:
    return "an unknown number of" if total is None else str(total)


def _content_length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _content_range_start(value: str | None) -> int | None:
    match = _CONTENT_RANGE.match(value or "")
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------- resolve


def resolve_checkpoint(
    name_or_path: str | os.PathLike[str],
    *,
    download: bool = True,
    progress: ProgressCallback | None = None,
    cache_dir: Path | str | None = None,
    verify: VerifyHook | None = None,
) -> Path:
    """Turn a registry name or a file path into the path of a checkpoint file.

    A registry name gives the cached file, downloaded first when missing and
    ``download`` is true (a cache hit touches no network). Anything else must be an
    existing file and is returned as given. Raises :class:`CheckpointError` for an
    unknown string or a missing file, :class:`DownloadError` if a download fails.
    """
    text = os.fspath(name_or_path)
    if text in REGISTRY:
        path = checkpoint_path(text, cache_dir)
        if path.is_file():
            return path
        if not download:
            entry = REGISTRY[text]
            raise CheckpointError(
                f"checkpoint {text} is not in the cache at {path} and downloading is off; "
                f"download {entry.url} by hand and place it there, or pass a local .pt path"
            )
        return _download(text, cache_dir=cache_dir, progress=progress, verify=verify)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    known = ", ".join(REGISTRY)
    if path.is_dir():
        raise CheckpointError(
            f"checkpoint {text!r} is a folder; pass a .pt file or a known name: {known}"
        )
    raise CheckpointError(
        f"checkpoint {text!r} is neither an existing file nor a known name; known names: {known}"
    )


# resolve_checkpoint's `download` flag shadows the function inside its body.
_download = download
