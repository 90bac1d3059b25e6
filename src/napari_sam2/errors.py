"""Exception types raised by napari-sam2.

Every error a user can cause (a bad checkpoint, a prompt outside the image, a
frame index out of range...) is raised as a subclass of :class:`Sam2Error` with a
single-line message that names the offending argument. The GUI and the CLI catch
``Sam2Error`` and show the message alone, never a traceback.
"""

from __future__ import annotations


class Sam2Error(Exception):
    """Base class of every napari-sam2 error meant to be shown to a user."""


class CheckpointError(Sam2Error):
    """A checkpoint file could not be read, or does not hold SAM 2 weights."""


class InputError(Sam2Error, ValueError):
    """An argument (image, frames, prompt, mask...) is invalid.

    Also a ``ValueError``, so generic callers that catch ``ValueError`` keep working.
    """


class DownloadError(Sam2Error):
    """A checkpoint could not be fetched or failed verification."""


def one_line(what: BaseException | str, limit: int = 600) -> str:
    """A message for the user on one line, at most ``limit`` characters.

    A :class:`Sam2Error` shows its message alone; an ``OSError`` with a reason
    shows "reason: file"; any other exception "Type: message". Whitespace
    (newlines included) collapses to single spaces. Plain text is only collapsed.
    """
    if isinstance(what, Sam2Error):
        text = str(what) or type(what).__name__
    elif isinstance(what, OSError) and what.strerror:
        text = f"{what.strerror}: {what.filename}" if what.filename else what.strerror
    elif isinstance(what, BaseException):
        text = f"{type(what).__name__}: {what}" if str(what) else type(what).__name__
    else:
        text = str(what)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
