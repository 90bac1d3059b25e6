"""Effort tables across sessions (CSV, Markdown) and one plot: ``napari-sam2 stats``.

Each session is a session folder holding ``effort.json`` or such a JSON file;
the sessions are taken in the order given (the plot's x axis: a sequence of
sessions, as the paper's data-engine phases).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, fields
from pathlib import Path

from ..errors import InputError
from .effort import EFFORT_FILE, IDLE_SECONDS, EffortLog, EffortStats

__all__ = ["COLUMNS", "effort_rows", "markdown_table", "plot_effort", "write_report"]

# (field of EffortStats, Markdown header)
COLUMNS = (
    ("frames", "frames"),
    ("objects", "objects"),
    ("clicks", "clicks"),
    ("boxes", "boxes"),
    ("mask_edits", "mask edits"),
    ("edited_frames_pct", "edited frames %"),
    ("clicks_per_clicked_frame", "clicks per clicked frame"),
    ("active_s_per_frame", "active s per frame"),
    ("active_s", "active s"),
    ("idle_gaps", "idle gaps"),
)
REPORT_FILES = ("effort.csv", "effort.md", "effort_per_frame.png")


def session_name(path: Path) -> str:
    """A short name for a session: its folder's name (or the JSON file's stem)."""
    path = Path(path)
    if path.is_dir() or path.name == EFFORT_FILE:
        return (path if path.is_dir() else path.parent).resolve().name
    return path.stem


def effort_rows(sessions, idle_s: float = IDLE_SECONDS) -> list[tuple[str, EffortStats]]:
    """(name, stats) of each session folder or effort JSON, in order."""
    if not sessions:
        raise InputError("SESSION: give at least one session folder or effort.json")
    return [(session_name(Path(s)), EffortLog.load(s).stats(idle_s)) for s in sessions]


def _fmt(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def csv_text(rows: list[tuple[str, EffortStats]]) -> str:
    """All rows as CSV: ``session`` then every :class:`EffortStats` field, unrounded."""
    out = io.StringIO()
    names = [f.name for f in fields(EffortStats)]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["session", *names])
    for name, stats in rows:
        d = asdict(stats)
        writer.writerow([name, *(repr(d[n]) if isinstance(d[n], float) else d[n] for n in names)])
    return out.getvalue()


def markdown_table(rows: list[tuple[str, EffortStats]]) -> str:
    """The paper-style table, one row per session, two decimals."""
    head = ["session", *(h for _, h in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for name, stats in rows:
        cells = [name, *(_fmt(getattr(stats, f)) for f, _ in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _figure_class():
    """matplotlib's Figure (no pyplot: the caller's backend, e.g. napari's Qt, is left alone)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError(
            "--out: the plot needs matplotlib (pip install 'napari-sam2[stats]')"
        ) from None
    return Figure


def plot_effort(rows: list[tuple[str, EffortStats]], path: Path) -> None:
    """One PNG: active time per frame and edited frames % over the sequence of sessions."""
    x = list(range(1, len(rows) + 1))
    fig = _figure_class()(figsize=(6, 5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(x, [s.active_s_per_frame for _, s in rows], "o-")
    top.set_ylabel("active s per frame")
    top.set_title("Annotation effort per frame over sessions")
    bottom.plot(x, [s.edited_frames_pct for _, s in rows], "s-", color="tab:orange")
    bottom.set_ylabel("edited frames %")
    bottom.set_xticks(x, [name for name, _ in rows], rotation=30, ha="right")
    bottom.set_xlabel("session")
    for ax in (top, bottom):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_report(sessions, out_dir, idle_s: float = IDLE_SECONDS) -> list[Path]:
    """Write effort.csv, effort.md and effort_per_frame.png into ``out_dir``.

    Refuses (InputError) to replace any of these files that already exists.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out: {out_dir} exists and is not a folder")
    paths = [out_dir / name for name in REPORT_FILES]
    taken = [p.name for p in paths if p.exists()]
    if taken:
        raise InputError(f"--out: {out_dir} already holds {', '.join(taken)}; not overwritten")
    rows = effort_rows(sessions, idle_s)
    _figure_class()  # fail before writing anything
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in zip(paths, (csv_text(rows), markdown_table(rows))):
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    plot_effort(rows, paths[2])
    return paths
