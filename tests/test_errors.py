"""The one one-line message helper shared by the CLI, the widget and the file readers."""

from __future__ import annotations

from napari_sam2.errors import CheckpointError, InputError, one_line


def test_sam2_errors_show_their_message_alone_on_one_line():
    assert one_line(CheckpointError("checkpoint: bad\nmore")) == "checkpoint: bad more"
    assert one_line(InputError("frame: out of range")) == "frame: out of range"
    assert one_line(InputError()) == "InputError"


def test_other_exceptions_show_their_type():
    assert one_line(RuntimeError("CUDA out of memory")) == "RuntimeError: CUDA out of memory"
    assert one_line(RuntimeError("out of memory\nwith details")) == (
        "RuntimeError: out of memory with details"
    )
    assert one_line(KeyError()) == "KeyError"


def test_os_errors_show_reason_and_file():
    exc = FileNotFoundError(2, "No such file or directory", "/x/y.tif")
    assert one_line(exc) == "No such file or directory: /x/y.tif"
    assert one_line(PermissionError(13, "Permission denied")) == "Permission denied"


def test_text_is_collapsed_and_long_messages_cut():
    assert one_line("a\n  b\tc") == "a b c"
    long = one_line("x" * 1000)
    assert len(long) == 600 and long.endswith("...")
    assert one_line("x" * 50, limit=10) == "xxxxxxx..."
