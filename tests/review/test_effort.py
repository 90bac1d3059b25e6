"""Effort statistics: exact counts of a scripted session, JSON round trip, `napari-sam2 stats`."""

from __future__ import annotations

import csv
import json

import pytest

from napari_sam2 import InputError
from napari_sam2.cli import main
from napari_sam2.review.effort import (
    EFFORT_FILE,
    Box,
    Click,
    EffortLog,
    MaskEdit,
    Propagation,
    Visit,
)
from napari_sam2.review.report import markdown_table, write_report


class _Clock:
    """Scripted time: each call returns the next of ``times``."""

    def __init__(self, times) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


def _scripted() -> EffortLog:
    """20 frames, 3 objects; times in seconds, with one 100 s break (idle, > 60 s)."""
    log = EffortLog(20, num_objects=3, clock=_Clock([0, 2, 3, 5, 10, 12, 112, 115, 116, 120]))
    log.record_click(0, 1, 10, 10)  # t=0
    log.record_click(0, 1, 12, 11, positive=False)  # t=2: same (frame, object)
    log.record_click(0, 2, 40, 40)  # t=3
    log.record_box(0, 3, (1, 2, 30, 40))  # t=5
    log.record_propagation(0, False, 20)  # t=10: not an edit
    log.record_visit(7, 2)  # t=12: a review jump
    log.record_click(7, 2, 41, 44)  # t=112: after a 100 s idle gap
    log.record_click(7, 2, 42, 45)  # t=115
    log.record_click(9, 2, 42, 45)  # t=116
    log.record_mask_edit(9, 2, pixels=35)  # t=120
    return log


def test_scripted_session_gives_exactly_its_counts():
    s = _scripted().stats()
    assert (s.frames, s.objects) == (20, 3)
    assert (s.clicks, s.boxes, s.mask_edits) == (6, 1, 1)
    # edited (frame, object): (0,1) (0,2) (0,3) (7,2) (9,2) = 5 of 20 x 3
    assert s.edited_frames == 5
    assert s.edited_frames_pct == pytest.approx(100 * 5 / 60)
    # clicked (frame, object): (0,1) (0,2) (7,2) (9,2): 6 clicks / 4
    assert s.clicked_frames == 4
    assert s.clicks_per_clicked_frame == pytest.approx(1.5)
    # gaps 2,1,2,5,2,100,3,1,4: the 100 s one is idle
    assert s.idle_gaps == 1
    assert s.active_s == pytest.approx(20.0)
    assert s.active_s_per_frame == pytest.approx(1.0)


def test_idle_threshold_is_a_parameter():
    s = _scripted().stats(idle_s=200)
    assert s.idle_gaps == 0 and s.active_s == pytest.approx(120.0)
    with pytest.raises(InputError, match="idle_s"):
        _scripted().stats(idle_s=0)


def test_empty_log_and_objects_counted_from_edits():
    s = EffortLog(5).stats()
    assert (s.clicks, s.edited_frames, s.active_s, s.clicks_per_clicked_frame) == (0, 0, 0.0, 0.0)
    log = EffortLog(4)
    log.add(Click(0.0, 0, 1, 1.0, 1.0))
    log.add(Click(1.0, 0, 2, 1.0, 1.0))
    assert log.stats().objects == 2 and log.stats().edited_frames_pct == pytest.approx(25.0)


def test_json_round_trip_keeps_typed_events(tmp_path):
    log = _scripted()
    path = log.save(tmp_path)
    assert path == tmp_path / EFFORT_FILE
    back = EffortLog.load(tmp_path)
    assert back == log
    assert [type(e) for e in back.events] == [
        Click,
        Click,
        Click,
        Box,
        Propagation,
        Visit,
        Click,
        Click,
        Click,
        MaskEdit,
    ]
    assert back.events[3].box == (1.0, 2.0, 30.0, 40.0)
    assert back.stats() == log.stats()


def test_bad_logs_are_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="num_frames"):
        EffortLog(0)
    with pytest.raises(InputError, match="not an effort event"):
        EffortLog(3).add({"kind": "click"})
    with pytest.raises(InputError, match="frame: 3 is outside"):
        EffortLog(3).record_click(3, 1, 0, 0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "napari-sam2 effort", "version": 1, "events": []}))
    with pytest.raises(InputError, match="malformed"):
        EffortLog.load(bad)
    bad.write_text(
        json.dumps(
            {
                "format": "napari-sam2 effort",
                "version": 1,
                "num_frames": 3,
                "events": [{"kind": "teleport", "t": 0}],
            }
        )
    )
    with pytest.raises(InputError, match="teleport"):
        EffortLog.load(bad)
    with pytest.raises(InputError, match="no such effort log"):
        EffortLog.load(tmp_path / "missing")


def _sessions(tmp_path):
    first = tmp_path / "day1"
    first.mkdir()
    _scripted().save(first)
    second = tmp_path / "day2.json"
    log = EffortLog(20, 3, clock=_Clock([0, 1, 2]))
    log.record_click(4, 1, 3, 3)
    log.record_click(4, 1, 4, 4)
    log.record_box(5, 1, (0, 0, 9, 9))
    log.save(second)
    return [first, second]


def test_report_files(tmp_path):
    sessions = _sessions(tmp_path)
    out = tmp_path / "report"
    paths = write_report(sessions, out)
    assert [p.name for p in paths] == ["effort.csv", "effort.md", "effort_per_frame.png"]
    rows = list(csv.DictReader(open(out / "effort.csv")))
    assert [r["session"] for r in rows] == ["day1", "day2"]
    assert rows[0]["clicks"] == "6" and float(rows[0]["edited_frames_pct"]) == pytest.approx(
        100 * 5 / 60
    )
    assert rows[1]["clicks"] == "2" and rows[1]["boxes"] == "1"
    md = (out / "effort.md").read_text()
    assert "| day1 | 20 | 3 | 6 | 1 | 1 | 8.33 | 1.50 | 1.00 |" in md
    assert (out / "effort_per_frame.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="not overwritten"):
        write_report(sessions, out)


def test_stats_command(tmp_path, capsys):
    sessions = [str(p) for p in _sessions(tmp_path)]
    assert main(["stats", *sessions]) == 0
    out = capsys.readouterr().out
    assert out == markdown_table(
        [("day1", _scripted().stats()), ("day2", EffortLog.load(sessions[1]).stats())]
    )
    assert main(["stats", *sessions, "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "effort_per_frame.png").exists()
    capsys.readouterr()
    assert main(["stats", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such effort log" in err
    assert main(["stats", *sessions, "--idle", "-1"]) == 2
