"""Interactive protocols: pure helpers, the annotator's logic on a scripted session, end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_sam2 import InputError, build_model
from napari_sam2.evaluation.interactive import (
    ProtocolResult,
    first_frames,
    iou_table,
    mask_box,
    object_ids,
    objects_below,
    offline_protocol,
    online_protocol,
    run_offline,
    run_online,
    run_vos,
    vos_protocol,
    worst_frame,
)
from napari_sam2.evaluation.synthetic import make_timelapse

# --------------------------------------------------------------------------- a scripted session


class _Result:
    def __init__(self, frame: int, labels: np.ndarray) -> None:
        self.frame = frame
        self._labels = labels

    def label_image(self) -> np.ndarray:
        return self._labels.copy()


class ScriptedSession:
    """A stand-in for VideoSession whose tracking quality is set frame by frame.

    An object prompted on a frame is exact there when ``clicks_fix`` (else
    clicks change nothing). Elsewhere it is its ground truth eroded
    ``erode[frame]`` times (0: exact, None: lost). Objects exist from their
    first prompt on. Calls are logged.
    """

    def __init__(self, gt, erode=None, clicks_fix=True) -> None:
        self.gt = gt
        self.num_frames, *hw = gt.shape
        self.frame_shape = tuple(hw)
        self.erode = erode or {}
        self.clicks_fix = clicks_fix
        self.known: list[int] = []
        self.prompted: set[tuple[int, int]] = set()
        self.calls: list[tuple] = []

    def _mask(self, frame: int, obj: int) -> np.ndarray:
        gt = self.gt[frame] == obj
        if (frame, obj) in self.prompted:
            return gt if self.clicks_fix else np.zeros_like(gt)
        k = self.erode.get(frame, 0)
        if k is None:
            return np.zeros_like(gt)
        return ndimage.binary_erosion(gt, iterations=k) if k else gt

    def _labels(self, frame: int) -> np.ndarray:
        out = np.zeros(self.frame_shape, np.int32)
        for obj in self.known:
            out[self._mask(frame, obj)] = obj
        return out

    def _prompt(self, frame, obj, call) -> _Result:
        self.calls.append(call)
        if obj not in self.known:
            self.known.append(obj)
        self.prompted.add((frame, obj))
        return _Result(frame, self._labels(frame))

    def add_points(self, frame, obj_id, points, labels, clear=True):
        return self._prompt(frame, obj_id, ("points", frame, obj_id, tuple(points[0]), labels[0]))

    def add_box(self, frame, obj_id, box):
        return self._prompt(frame, obj_id, ("box", frame, obj_id, tuple(box)))

    def add_mask(self, frame, obj_id, mask):
        return self._prompt(frame, obj_id, ("mask", frame, obj_id))

    def propagate(self, start_frame=None, reverse=False, max_frames=None):
        self.calls.append(("propagate", start_frame))
        for t in range(start_frame, self.num_frames):
            yield _Result(t, self._labels(t))

    def segment(self, direction="both"):
        self.calls.append(("segment", direction))
        return np.stack([self._labels(t) for t in range(self.num_frames)])


def _disks(n_frames=6, late=None) -> np.ndarray:
    """(T, 40, 60) labels: object 1 a disk, 2 a square, 3 from frame ``late`` on."""
    gt = np.zeros((n_frames, 40, 60), np.int32)
    yy, xx = np.mgrid[:40, :60]
    for t in range(n_frames):
        gt[t][(yy - 12) ** 2 + (xx - 12 - t) ** 2 <= 49] = 1
        gt[t, 22:34, 30 + t : 42 + t] = 2
        if late is not None and t >= late:
            gt[t, 2:8, 50:56] = 3
    return gt


def _propagate_starts(session) -> list[int]:
    return [c[1] for c in session.calls if c[0] == "propagate"]


def _prompted(result: ProtocolResult) -> list[tuple[int, int]]:
    return [(p.frame, p.obj_id) for p in result.prompts]


# --------------------------------------------------------------------------- pure helpers


def test_object_ids_and_first_frames():
    gt = _disks(5, late=3)
    assert object_ids(gt) == (1, 2, 3)
    assert first_frames(gt) == {1: 0, 2: 0, 3: 3}


def test_iou_table_by_hand():
    gt = np.zeros((3, 4, 4), np.int32)
    pred = np.zeros_like(gt)
    gt[0, :2, :2] = 1  # 4 px
    pred[0, :2, :1] = 1  # 2 px inside: IoU 0.5
    gt[1, :, :] = 2
    pred[1, :2, :] = 2  # half: IoU 0.5 for 2; 1 absent from both: 1
    pred[2, 0, 0] = 1  # false positive: IoU 0
    pred[2, 3, 3] = 9  # a label that is no object is ignored
    ious = iou_table(pred, gt, (1, 2))
    np.testing.assert_allclose(ious, [[0.5, 1.0], [1.0, 0.5], [0.0, 1.0]])
    assert objects_below(pred[1], gt[1], (1, 2), 0.75) == [2]


def test_worst_frame_skips_prompted_and_stops_when_perfect():
    ious = np.array([0.9, 0.2, 0.2, 1.0])
    assert worst_frame(ious) == 1  # earliest of a tie
    assert worst_frame(ious, exclude=[1]) == 2
    assert worst_frame(ious, exclude=[0, 1, 2]) is None  # only a perfect frame left
    assert worst_frame(np.ones(3)) is None


def test_mask_box_is_tight_and_inclusive():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    assert mask_box(mask) == (2, 3, 4, 8)
    with pytest.raises(InputError):
        mask_box(np.zeros((4, 4), bool))


def test_clicks_go_to_the_deepest_error_point():
    """First click on a new object: positive, at the centre of the disk."""
    gt = _disks(3)
    session = ScriptedSession(gt, clicks_fix=False)
    vos_protocol(session, gt, prompt="clicks", n_clicks=2)
    clicks = [c for c in session.calls if c[0] == "points" and c[2] == 1]
    assert clicks == [("points", 0, 1, (12, 12), 1)] * 2  # nothing changed: same spot again


# --------------------------------------------------------------------------- online


def test_online_stops_exactly_at_bad_frames():
    gt = _disks(6)
    session = ScriptedSession(gt, erode={2: None, 4: 2})
    result = online_protocol(session, gt)
    assert _propagate_starts(session) == [0, 2, 4]
    assert _prompted(result) == [(0, 1), (0, 2), (2, 1), (2, 2), (4, 1), (4, 2)]
    assert all(p.clicks == 1 for p in result.prompts)  # one click fixes a frame here
    (step,) = result.steps
    assert (step.prompted_frames, step.clicks) == (3, 6)
    assert step.J == step.F == step.JF == 1.0


def test_online_prompts_objects_where_they_appear_and_respects_caps():
    gt = _disks(7, late=3)
    session = ScriptedSession(gt, erode={5: None, 6: None}, clicks_fix=False)
    result = online_protocol(session, gt, max_clicks_per_frame=2, max_frames_prompted=2)
    assert _propagate_starts(session) == [0, 3, 5]
    # Clicks never fix anything here: 2 each. On frame 6 every object is at its cap.
    assert _prompted(result) == [(0, 1), (0, 2), (3, 3), (5, 1), (5, 2), (5, 3)]
    assert {p.clicks for p in result.prompts} == {2}
    assert result.final.prompted_frames == 2 and result.final.clicks == 12


def test_online_good_frames_need_no_clicks():
    gt = _disks(5)
    session = ScriptedSession(gt, erode={3: 1})  # IoU 0.76 and 0.69 on frame 3
    result = online_protocol(session, gt, iou_threshold=0.5)
    assert _propagate_starts(session) == [0]
    assert result.final.clicks == 2 and result.final.prompted_frames == 1


# --------------------------------------------------------------------------- offline


def test_offline_prompts_worst_frames_until_perfect():
    gt = _disks(5)
    session = ScriptedSession(gt, erode={0: 1, 1: 3, 2: 2, 3: 0, 4: 1})
    result = offline_protocol(session, gt, max_frames_prompted=8)
    assert [s.prompted_frames for s in result.steps] == [1, 2, 3, 4]
    # Pass 1 on the first frame, then the worst frames: 1 (3 erosions), 2, then 4.
    assert [p.frame for p in result.prompts if p.obj_id == 1] == [0, 1, 2, 4]
    assert [s.clicks for s in result.steps] == [2, 4, 6, 8]
    assert result.final.JF == 1.0
    assert session.calls.count(("segment", "both")) == 4


def test_offline_stops_at_the_frame_limit_and_counts_clicks():
    gt = _disks(6, late=2)
    session = ScriptedSession(gt, erode=dict.fromkeys(range(6)), clicks_fix=False)
    result = offline_protocol(session, gt, max_frames_prompted=3, clicks_per_frame=2)
    assert len(result.steps) == 3
    assert [s.prompted_frames for s in result.steps] == [1, 2, 3]
    assert [s.clicks for s in result.steps] == [6, 12, 18]  # 3 objects x 2 clicks per pass
    for obj in (1, 2, 3):
        frames = [p.frame for p in result.prompts if p.obj_id == obj]
        assert len(frames) == len(set(frames)) == 3
    assert [p.frame for p in result.prompts if p.obj_id == 3][0] == 2  # where it appears


# --------------------------------------------------------------------------- VOS


@pytest.mark.parametrize("prompt", ["mask", "box", "clicks"])
def test_vos_prompts_each_object_once_where_it_appears(prompt):
    gt = _disks(6, late=3)
    session = ScriptedSession(gt)
    result = vos_protocol(session, gt, prompt=prompt, n_clicks=3)
    assert _propagate_starts(session) == [0, 3]
    assert _prompted(result) == [(0, 1), (0, 2), (3, 3)]
    assert {p.kind for p in result.prompts} == {prompt}
    if prompt == "box":
        assert ("box", 0, 2, (22, 30, 33, 41)) in session.calls
    assert result.final.JF == 1.0
    assert result.protocol == ("vos-3-clicks" if prompt == "clicks" else f"vos-{prompt}")


def test_bad_inputs():
    gt = _disks(4)
    session = ScriptedSession(gt)
    with pytest.raises(InputError, match="shape"):
        offline_protocol(session, gt[:, :-1])
    with pytest.raises(InputError, match="prompt"):
        vos_protocol(session, gt, prompt="scribble")
    with pytest.raises(InputError, match="first and last"):
        vos_protocol(ScriptedSession(gt[:2]), gt[:2])
    with pytest.raises(InputError, match="iou_threshold"):
        online_protocol(session, gt, iou_threshold=1.5)
    with pytest.raises(InputError, match="max_frames_prompted"):
        offline_protocol(session, gt, max_frames_prompted=0)
    with pytest.raises(InputError, match="object"):
        offline_protocol(session, np.zeros_like(gt))


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("sam2.1_hiera_tiny", image_size=128)


@pytest.fixture(scope="module")
def sample():
    data = make_timelapse(4, (64, 64), n_cells=2, seed=0)
    assert object_ids(data.labels) == (1, 2)
    return data


def _check_result(result: ProtocolResult, limit: int) -> None:
    assert result.objects == (1, 2)
    clicks = [s.clicks for s in result.steps]
    assert clicks == sorted(clicks)
    assert all(1 <= s.prompted_frames <= limit for s in result.steps)
    for s in result.steps:
        assert all(0.0 <= v <= 1.0 for v in (s.J, s.F, s.JF))
    assert json.loads(json.dumps(result.as_dict()))["protocol"] == result.protocol


def test_offline_end_to_end(model, sample):
    result = run_offline(model, sample.image, sample.labels, max_frames_prompted=2)
    _check_result(result, 2)
    assert [s.prompted_frames for s in result.steps] in ([1], [1, 2])
    assert {p.clicks for p in result.prompts} <= {1, 2, 3}


def test_online_end_to_end(model, sample):
    result = run_online(model, sample.image, sample.labels)
    _check_result(result, 4)
    assert len(result.steps) == 1 and {p.frame for p in result.prompts} >= {0}


@pytest.mark.parametrize(("prompt", "n_clicks"), [("mask", 1), ("clicks", 3)])
def test_vos_end_to_end(model, sample, prompt, n_clicks):
    result = run_vos(model, sample.image, sample.labels, prompt=prompt, n_clicks=n_clicks)
    _check_result(result, 1)
    assert _prompted(result) == [(0, 1), (0, 2)]


def test_benchmark_script_runs(tmp_path):
    path = Path(__file__).parents[2] / "benchmarks" / "interactive_protocol.py"
    spec = importlib.util.spec_from_file_location("interactive_protocol", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "ip.json"
    argv = ["--image-size", "128", "--frames", "3", "--size", "48", "--cells", "1"]
    argv += ["--protocols", "offline,vos", "--max-frames-prompted", "1", "--vos-prompts", "box"]
    argv += ["--json", str(out)]
    payload = script.main(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(payload))
    assert [r["protocol"] for r in payload["results"]] == ["offline", "vos-box"]
    assert payload["model"]["random_init"] is True
