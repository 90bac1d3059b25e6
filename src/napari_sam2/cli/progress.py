"""The command line's progress bar on stderr (frames or bytes, rate and time left)."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO


class Progress:
    """A small text progress bar: count / total, rate and ETA, on a stream (stderr).

    On a terminal it redraws one line (at most 10 times a second); in a log file
    it writes a full line at most every ``log_interval`` seconds, so batch logs
    stay short. ``unit="B"`` shows sizes in MB.
    """

    def __init__(
        self,
        total: int | None,
        label: str,
        unit: str = "frames",
        stream: TextIO | None = None,
        enabled: bool = True,
        log_interval: float = 10.0,
    ) -> None:
        self.total, self.label, self.unit = total, label, unit
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.done = 0
        self._start = time.monotonic()
        self._last = -math.inf
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._interval = 0.1 if self._tty else log_interval
        self._drawn = False

    def update(self, n: int = 1) -> None:
        self.set(self.done + n)

    def set(self, done: int, total: int | None = None) -> None:
        """Set the count (and the total, when it becomes known)."""
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        if self.enabled and now - self._last >= self._interval:
            self._last = now
            self._draw()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            if self._tty:
                self.stream.write("\n")
            self.stream.flush()

    def text(self) -> str:
        """The bar as one line of text, e.g. ``segment [#####.....] 3/6 frames 1.2 frames/s ETA 0:03``."""
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        parts = [self.label]
        if self.total:
            filled = int(20 * min(self.done / self.total, 1.0))
            parts.append("[" + "#" * filled + "." * (20 - filled) + "]")
        parts.append(f"{self._amount(self.done)}/{self._amount(self.total)} {self._unit()}")
        parts.append(f"{self._rate(rate)}")
        if self.total and rate > 0:
            parts.append(f"ETA {_clock(max(self.total - self.done, 0) / rate)}")
        else:
            parts.append(f"elapsed {_clock(elapsed)}")
        return " ".join(parts)

    def _amount(self, n: int | None) -> str:
        if n is None:
            return "?"
        return f"{n / 1e6:.1f}" if self.unit == "B" else str(n)

    def _unit(self) -> str:
        return "MB" if self.unit == "B" else self.unit

    def _rate(self, rate: float) -> str:
        if self.unit == "B":
            return f"{rate / 1e6:.1f} MB/s"
        return f"{rate:.2f} {self.unit}/s"

    def _draw(self) -> None:
        line = self.text()
        if self._tty:
            self.stream.write("\r" + line.ljust(79))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._drawn = True


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
