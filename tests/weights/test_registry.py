"""Checkpoint registry, cache folder and download, against a local HTTP server.

Every request goes to 127.0.0.1; no real checkpoint and no model code is needed
(the structural check is an injected ``verify`` function).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import re
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from napari_sam2.errors import CheckpointError, DownloadError
from napari_sam2.weights import registry
from napari_sam2.weights.registry import REGISTRY, CheckpointEntry

PAYLOAD = os.urandom(48 * 1024 + 123)  # a few KB, odd length so halves are uneven
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
TIMEOUT = 5


# --------------------------------------------------------------------------- server


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.payload``; ``server.mode`` selects a misbehaviour."""

    def do_GET(self) -> None:  # noqa: N802 - name required by BaseHTTPRequestHandler
        server = self.server
        with server.lock:
            server.requests.append((self.path, self.headers.get("Range")))
            first = len(server.requests) == 1
        if server.mode == "stall":
            server.release.wait(TIMEOUT)  # say nothing until the test is over
            return
        if server.mode == "not_found":
            self.send_error(404)
            return
        data = server.payload
        start = _range_start(self.headers.get("Range"))
        if start is not None and server.mode != "ignore_range":
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.mode == "cut_first" and first:
            # Promise the whole body, send half, hang up: a dropped connection.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


def _range_start(value: str | None) -> int | None:
    match = re.fullmatch(r"bytes=(\d+)-", value or "")
    return int(match.group(1)) if match else None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, payload: bytes, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.payload = payload
        self.mode = mode
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/ckpt.pt"


@pytest.fixture
def serve() -> Iterator:
    """``serve(mode="normal", payload=PAYLOAD)`` starts a server; all stop at teardown."""
    servers: list[_Server] = []

    def start(mode: str = "normal", payload: bytes = PAYLOAD) -> _Server:
        server = _Server(payload, mode)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.release.set()
        server.shutdown()
        server.server_close()


def _entry(url: str, *, size: int | None = len(PAYLOAD), sha256: str | None = PAYLOAD_SHA):
    return CheckpointEntry(
        name="test_ckpt", url=url, size=size, sha256=sha256, variant="test", release="test"
    )


def _free_port() -> int:
    """A port nothing listens on (bound then released, so connecting is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_eight_official_checkpoints() -> None:
    sizes = {"tiny", "small", "base_plus", "large"}
    expected = {f"sam2_hiera_{s}" for s in sizes} | {f"sam2.1_hiera_{s}" for s in sizes}
    assert set(REGISTRY) == expected
    for name, entry in REGISTRY.items():
        folder = "092824" if name.startswith("sam2.1") else "072824"
        assert entry.name == entry.variant == name
        assert entry.url == f"https://dl.fbaipublicfiles.com/segment_anything_2/{folder}/{name}.pt"
        assert entry.licence == "Apache-2.0"
        assert entry.filename == f"{name}.pt"
        assert entry.size is None or entry.size > 100_000_000
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)


def test_registry_is_immutable() -> None:
    entry = REGISTRY["sam2.1_hiera_tiny"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.url = "http://elsewhere"  # type: ignore[misc]
    with pytest.raises(TypeError):
        REGISTRY["x"] = entry  # type: ignore[index]


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(CheckpointError) as info:
        registry.get_entry("sam3_giant")
    assert "sam2.1_hiera_tiny" in str(info.value) and "sam3_giant" in str(info.value)


# --------------------------------------------------------------------------- cache folder


def test_cache_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path / "models"))
    assert registry.cache_dir() == tmp_path / "models"
    path = registry.checkpoint_path("sam2.1_hiera_tiny")
    assert path == tmp_path / "models" / "sam2.1_hiera_tiny.pt"


def test_cache_default_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NAPARI_SAM2_CACHE", raising=False)
    assert registry.cache_dir() == registry.platform_cache_root()


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {}, "/home/u/.cache/napari-sam2"),
        ("linux", {"XDG_CACHE_HOME": "/xdg"}, "/xdg/napari-sam2"),
        ("linux", {"XDG_CACHE_HOME": "relative"}, "/home/u/.cache/napari-sam2"),
        ("darwin", {}, "/home/u/Library/Caches/napari-sam2"),
        ("win32", {"LOCALAPPDATA": "/appdata"}, "/appdata/napari-sam2/Cache"),
    ],
)
def test_platform_cache_root(platform: str, env: dict, expected: str) -> None:
    got = registry.platform_cache_root(platform=platform, env=env, home=Path("/home/u"))
    assert got == Path(expected)


def test_cache_state_reports_presence(tmp_path: Path) -> None:
    (tmp_path / "sam2_hiera_small.pt").write_bytes(b"x")
    state = registry.cache_state(tmp_path)
    assert [e.name for e, _, _ in state] == list(REGISTRY)
    present = {e.name for e, path, here in state if here}
    assert present == {"sam2_hiera_small"}
    assert all(path == tmp_path / e.filename for e, path, _ in state)


# --------------------------------------------------------------------------- download


def test_clean_download(serve, tmp_path: Path) -> None:
    server = serve()
    calls: list[tuple[int, int | None]] = []
    verified: list[Path] = []

    def verify(path: Path) -> None:
        # Runs before the rename: the final name must not exist yet.
        assert path.name == "test_ckpt.pt.part"
        assert not (tmp_path / "test_ckpt.pt").exists()
        verified.append(path)

    path = registry.download(
        _entry(server.url),
        cache_dir=tmp_path,
        progress=lambda done, total: calls.append((done, total)),
        timeout=TIMEOUT,
        verify=verify,
    )
    assert path == tmp_path / "test_ckpt.pt"
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "test_ckpt.pt.part").exists()
    assert len(verified) == 1
    assert calls[0] == (0, len(PAYLOAD)) and calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert server.requests == [("/ckpt.pt", None)]


def test_registry_name_with_url_override(serve, monkeypatch, tmp_path: Path) -> None:
    # The real entry's size and hash still apply to a mirror; a mismatch is caught.
    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path))
    server = serve()
    with pytest.raises(DownloadError, match="size mismatch"):
        registry.download("sam2.1_hiera_tiny", url=server.url, timeout=TIMEOUT, verify=None)
    assert list(tmp_path.iterdir()) == []


def test_resume_after_cut_connection(serve, tmp_path: Path) -> None:
    server = serve("cut_first")
    entry = _entry(server.url)
    with pytest.raises(DownloadError) as info:
        registry.download(entry, cache_dir=tmp_path, timeout=TIMEOUT, verify=None)
    message = str(info.value)
    assert "resume" in message and server.url in message
    part = tmp_path / "test_ckpt.pt.part"
    half = len(PAYLOAD) // 2
    assert part.read_bytes() == PAYLOAD[:half]
    assert not (tmp_path / "test_ckpt.pt").exists()

    calls: list[tuple[int, int | None]] = []
    path = registry.download(
        entry,
        cache_dir=tmp_path,
        timeout=TIMEOUT,
        verify=None,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert path.read_bytes() == PAYLOAD
    assert not part.exists()
    assert server.requests[1] == ("/ckpt.pt", f"bytes={half}-")
    assert calls[0] == (half, len(PAYLOAD))  # progress restarts where it left off


def test_progress_callback_can_cancel(serve, tmp_path: Path) -> None:
    server = serve(payload=PAYLOAD * 64)  # > 1 chunk, so progress fires mid-way

    class Cancelled(Exception):
        pass

    def cancel(done: int, total: int | None) -> None:
        if done > 0:
            raise Cancelled

    entry = _entry(server.url, size=None, sha256=None)
    with pytest.raises(Cancelled):
        registry.download(entry, cache_dir=tmp_path, timeout=TIMEOUT, verify=None, progress=cancel)
    assert (tmp_path / "test_ckpt.pt.part").exists()
    assert not (tmp_path / "test_ckpt.pt").exists()


def test_server_ignoring_range_restarts_from_zero(serve, tmp_path: Path) -> None:
    server = serve("ignore_range")
    (tmp_path / "test_ckpt.pt.part").write_bytes(b"stale bytes from some other file")
    path = registry.download(_entry(server.url), cache_dir=tmp_path, timeout=TIMEOUT, verify=None)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[0][1] == "bytes=32-"  # it asked, got 200, rewrote


def test_unsatisfiable_range_restarts_from_zero(serve, tmp_path: Path) -> None:
    # A .part as long as the remote file, with no known size: 416, then a full GET.
    server = serve()
    (tmp_path / "test_ckpt.pt.part").write_bytes(b"\0" * len(PAYLOAD))
    entry = _entry(server.url, size=None)
    path = registry.download(entry, cache_dir=tmp_path, timeout=TIMEOUT, verify=None)
    assert path.read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [f"bytes={len(PAYLOAD)}-", None]


@pytest.mark.parametrize(
    ("size", "sha256", "reason"),
    [
        (len(PAYLOAD) + 1, PAYLOAD_SHA, "size mismatch"),
        (len(PAYLOAD), "0" * 64, "sha256 mismatch"),
        (None, "f" * 64, "sha256 mismatch"),
    ],
)
def test_wrong_size_or_hash_leaves_nothing(serve, tmp_path, size, sha256, reason) -> None:
    server = serve()
    with pytest.raises(DownloadError, match=reason) as info:
        registry.download(
            _entry(server.url, size=size, sha256=sha256),
            cache_dir=tmp_path,
            timeout=TIMEOUT,
            verify=None,
        )
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_structural_check_leaves_nothing(serve, tmp_path: Path) -> None:
    server = serve()

    def verify(path: Path) -> None:
        raise CheckpointError("no 'model' key in the state dict")

    with pytest.raises(DownloadError, match="not a usable SAM 2 checkpoint.*'model' key"):
        registry.download(_entry(server.url), cache_dir=tmp_path, timeout=TIMEOUT, verify=verify)
    assert list(tmp_path.iterdir()) == []


def test_offline_message_names_url_and_target(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}/sam2.1_hiera_tiny.pt"
    target = tmp_path / "test_ckpt.pt"
    with pytest.raises(DownloadError) as info:
        registry.download(_entry(url), cache_dir=tmp_path, timeout=TIMEOUT, verify=None)
    message = str(info.value)
    assert "\n" not in message
    assert url in message and str(target) in message
    assert "connection refused (offline?)" in message
    assert "by hand" in message
    assert not target.exists()


def test_http_error_is_reported(serve, tmp_path: Path) -> None:
    server = serve("not_found")
    with pytest.raises(DownloadError, match="HTTP 404"):
        registry.download(_entry(server.url), cache_dir=tmp_path, timeout=TIMEOUT, verify=None)
    assert not (tmp_path / "test_ckpt.pt").exists()


def test_silent_server_times_out(serve, tmp_path: Path) -> None:
    server = serve("stall")
    with pytest.raises(DownloadError, match=r"no answer within 0.3 s \(offline"):
        registry.download(_entry(server.url), cache_dir=tmp_path, timeout=0.3, verify=None)


def test_existing_file_is_a_cache_hit(tmp_path: Path, no_network) -> None:
    (tmp_path / "test_ckpt.pt").write_bytes(b"already here")
    path = registry.download(_entry("http://127.0.0.1:9/x"), cache_dir=tmp_path)
    assert path.read_bytes() == b"already here"


def test_download_checks_structure_only_through_the_loader(serve, monkeypatch, tmp_path) -> None:
    """The registry knows no model: by default it checks size and hash only; the
    loader's download_checkpoint adds the structural check (a file that does not
    load as SAM 2 is refused and deleted)."""
    from napari_sam2.weights import loading

    server = serve()
    path = registry.download(_entry(server.url), cache_dir=tmp_path, timeout=TIMEOUT)
    assert path.read_bytes() == PAYLOAD  # not a checkpoint, yet accepted: no structural check
    path.unlink()
    with pytest.raises(DownloadError, match="not a usable SAM 2 checkpoint"):
        loading.download_checkpoint(_entry(server.url), cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- resolve


def test_resolve_name_cache_hit_touches_no_network(monkeypatch, tmp_path, no_network) -> None:
    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path))
    cached = tmp_path / "sam2.1_hiera_tiny.pt"
    cached.write_bytes(b"weights")
    assert registry.resolve_checkpoint("sam2.1_hiera_tiny") == cached


def test_resolve_name_missing_without_download(monkeypatch, tmp_path, no_network) -> None:
    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError) as info:
        registry.resolve_checkpoint("sam2_hiera_large", download=False)
    message = str(info.value)
    assert str(tmp_path / "sam2_hiera_large.pt") in message
    assert REGISTRY["sam2_hiera_large"].url in message


def test_resolve_name_downloads_when_missing(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path))
    seen: list[str] = []

    def fake_download(name, *, cache_dir=None, progress=None, verify=None):
        seen.append(name)
        return tmp_path / "fetched.pt"

    monkeypatch.setattr(registry, "_download", fake_download)
    assert registry.resolve_checkpoint("sam2_hiera_small") == tmp_path / "fetched.pt"
    assert seen == ["sam2_hiera_small"]


def test_resolve_path_is_used_as_given(tmp_path: Path, no_network) -> None:
    file = tmp_path / "my finetuned.pt"
    file.write_bytes(b"weights")
    assert registry.resolve_checkpoint(file) == file
    assert registry.resolve_checkpoint(str(file)) == file


@pytest.mark.parametrize("bad", ["sam2_hiera_huge", "missing/file.pt"])
def test_resolve_unknown_string(bad: str, no_network) -> None:
    with pytest.raises(CheckpointError) as info:
        registry.resolve_checkpoint(bad)
    message = str(info.value)
    assert "\n" not in message and repr(bad) in message
    assert all(name in message for name in REGISTRY)


def test_resolve_folder_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a folder"):
        registry.resolve_checkpoint(tmp_path)
