"""``track_all`` and its loop.

The loop is checked twice: with an oracle session and generator built from a
synthetic clip's ground truth (perfect propagation and detection, so the
rules alone decide ids and lineage), and end to end with a small random-init
model (mechanics and invariants only: random weights cannot track).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_sam2.engine.session import FrameResult
from napari_sam2.errors import InputError
from napari_sam2.evaluation.metrics import ctc_scores
from napari_sam2.evaluation.synthetic import make_timelapse
from napari_sam2.modeling.config import HieraConfig, Sam2Config
from napari_sam2.modeling.sam2 import Sam2Model
from napari_sam2.tracking import GeneratorConfig, TrackConfig, export, track_all
from napari_sam2.tracking.mask_generator import GeneratedMasks
from napari_sam2.tracking.tracker import run_tracking


class _Source:
    def __init__(self, image):
        self.image = image

    def raw(self, t):
        return self.image[t]

    def check_index(self, t, name="frame"):
        assert 0 <= t < len(self.image)
        return t


class OracleSession:
    """Propagates each object to the ground-truth cell it overlapped most on the
    previous frame; after that cell divides, to the union of its daughters."""

    def __init__(self, clip):
        self.gt = clip.labels
        self.parent = {r.label: r.parent for r in clip.lineage}
        self.num_frames, self.frame_shape = len(clip.labels), clip.labels.shape[1:]
        self.source = _Source(clip.image)
        self.objects: dict[int, np.ndarray] = {}
        self.removed: list[int] = []

    def add_mask(self, frame, obj_id, mask):
        self.objects[obj_id] = np.asarray(mask, bool)

    def remove_object(self, obj_id):
        self.removed.append(obj_id)
        del self.objects[obj_id]

    def propagate(self, start_frame, max_frames=1):
        t = start_frame
        logits, scores = [], []
        for obj_id, prev in self.objects.items():
            ids, counts = np.unique(self.gt[t - 1][prev], return_counts=True)
            counts, ids = counts[ids > 0], ids[ids > 0]
            mask = np.zeros(self.frame_shape, bool)
            if len(ids):
                cell = ids[np.argmax(counts)]
                kids = [k for k, p in self.parent.items() if p == cell]
                mask = np.isin(self.gt[t], [cell] if (self.gt[t] == cell).any() else kids)
            self.objects[obj_id] = mask
            logits.append(np.where(mask, 5.0, -5.0))
            scores.append(5.0 if mask.any() else -5.0)
        yield FrameResult(
            t, tuple(self.objects), np.asarray(logits, np.float32), np.asarray(scores, np.float32)
        )


class OracleGenerator:
    """Returns every ground-truth cell of the frame (the frame is found by identity)."""

    def __init__(self, clip):
        self.clip = clip

    def generate(self, frame, **kwargs):
        t = next(i for i in range(len(self.clip.image)) if self.clip.image[i] is frame)
        lab = self.clip.labels[t]
        ids = [i for i in np.unique(lab) if i]
        n = len(ids)
        return GeneratedMasks(
            np.stack([lab == i for i in ids]) if n else np.zeros((0, *lab.shape), bool),
            np.ones(n, np.float32), np.ones(n, np.float32), np.zeros((n, 4), np.int64),
            np.zeros((n, 2), np.float32), np.zeros((n, 4), np.int64),
        )  # fmt: skip


@pytest.fixture(scope="module")
def clip():
    for seed in range(10100, 10140):
        tl = make_timelapse(n_frames=30, shape=(128, 128), n_cells=8, seed=seed, division_rate=0.1)
        if sum(1 for r in tl.lineage if r.parent) >= 4:
            # frames as a list: the oracle generator finds them by identity
            return SimpleNamespace(labels=tl.labels, image=list(tl.image), lineage=tl.lineage)
    raise AssertionError("no clip with two divisions")


def test_oracle_loop_recovers_ground_truth_lineage(clip):
    cfg = TrackConfig(detect_every=3, min_area=8, division_min_age=0)
    result = run_tracking(OracleSession(clip), OracleGenerator(clip), cfg)
    scores = ctc_scores(result.labels, clip.labels, result.lineage_rows(), clip.lineage)
    assert scores["TRA"] >= 0.97 and scores["DET"] >= 0.97
    n_div = len(result.divisions())
    gt_div = sum(1 for r in clip.lineage if r.parent) // 2
    assert n_div >= gt_div - 1 and all(len(d) == 2 for d in result.divisions().values())
    _check_invariants(result)


def _render(labels, brightness):
    """uint8 frames of ``labels`` (T, H, W): label i at ``brightness[i]``, background 10.
    A mitotic mother is brighter than its daughters (condensed chromatin), which
    the dimming cue of the division rules looks for."""
    lut = np.full(int(labels.max()) + 1, 10, np.uint8)
    for label, value in brightness.items():
        lut[label] = value
    return [lut[f] for f in labels]


def _split_clip():
    """One cell that splits in two on frame 3 (the oracle follows both halves as one)."""
    labels = np.zeros((6, 40, 60), np.int32)
    yy, xx = np.mgrid[:40, :60]
    for t in range(6):
        if t < 3:
            labels[t][(yy - 20) ** 2 + (xx - 30) ** 2 <= 64] = 1
        else:
            labels[t][(yy - 20) ** 2 + (xx - 30 + 3 * t) ** 2 <= 36] = 2
            labels[t][(yy - 20) ** 2 + (xx - 30 - 3 * t) ** 2 <= 36] = 3
    rows = [SimpleNamespace(label=i, parent=p) for i, p in ((1, 0), (2, 1), (3, 1))]
    image = _render(labels, {1: 200, 2: 100, 3: 100})
    return SimpleNamespace(labels=labels, image=image, lineage=rows)


def _appearance_clip():
    """The tracked mask keeps one half; the other half appears beside it on frame 2."""
    labels = np.zeros((5, 40, 60), np.int32)
    yy, xx = np.mgrid[:40, :60]
    big = (yy - 20) ** 2 + (xx - 30) ** 2 <= 100
    for t in range(2):
        labels[t][big] = 1
    for t in range(2, 5):
        labels[t][big & (xx < 29)] = 2
        labels[t][big & (xx > 31)] = 3
    # The oracle session knows only the left daughter: it keeps following that half.
    rows = [SimpleNamespace(label=2, parent=1)]
    image = _render(labels, {1: 200, 2: 100, 3: 100})
    return SimpleNamespace(labels=labels, image=image, lineage=rows)


def test_split_division_ends_mother_and_links_daughters():
    c = _split_clip()
    session = OracleSession(c)
    result = run_tracking(
        session, OracleGenerator(c), TrackConfig(detect_every=100, min_area=5, division_min_age=0)
    )
    assert result.lineage[1] == (0, 2, 0)
    daughters = result.divisions()[1]
    assert len(daughters) == 2 and all(result.lineage[d][:2] == (3, 5) for d in daughters)
    assert session.removed == [1]


def test_appearance_next_to_shrunk_track_is_a_division():
    c = _appearance_clip()
    result = run_tracking(
        OracleSession(c),
        OracleGenerator(c),
        TrackConfig(detect_every=1, min_area=5, contact_distance=3, division_min_age=0),
    )
    assert result.lineage[1] == (0, 1, 0), result.lineage
    daughters = result.divisions()[1]
    assert len(daughters) == 2 and {result.lineage[d][0] for d in daughters} == {2}


def _released(result, gt, frame):
    """Track 1 follows one of the two halves on ``frame``; another track, with no
    mother, the other half."""
    halves = [gt[frame] == 2, gt[frame] == 3]
    mine = [int(((result.labels[frame] == 1) & h).sum()) for h in halves]
    assert sorted(mine)[0] == 0 and sorted(mine)[1] > 0
    other = halves[mine.index(0)]
    ids, counts = np.unique(result.labels[frame][other], return_counts=True)
    new = int(ids[np.argmax(counts)])
    assert new not in (0, 1) and result.lineage[new][2] == 0


def test_a_track_younger_than_division_min_age_keeps_its_id_when_it_splits():
    c = _split_clip()  # splits on frame 3
    young = TrackConfig(detect_every=100, min_area=5, division_min_age=4)
    session = OracleSession(c)
    result = run_tracking(session, OracleGenerator(c), young)
    assert result.divisions() == {} and result.lineage[1] == (0, 5, 0)
    # It keeps the larger half (re-prompted with it); the other is found as a new cell.
    _released(result, c.labels, 5)
    old_enough = TrackConfig(detect_every=100, min_area=5, division_min_age=3)
    result = run_tracking(OracleSession(c), OracleGenerator(c), old_enough)
    assert len(result.divisions()[1]) == 2
    with pytest.raises(InputError, match="^division_min_age:"):
        TrackConfig(division_min_age=-1)


def test_a_track_that_splits_without_a_mitotic_cue_is_two_cells_not_a_division():
    """A track that covered two cells falls apart with its signal kept: it keeps
    one cell, the other becomes a track of its own, no lineage link. The same
    split with the signal halved is a division; with the rounding cue instead, the
    track's elongated mask is what tells."""
    labels = np.zeros((6, 40, 60), np.int32)
    yy, xx = np.mgrid[:40, :60]
    for t in range(6):
        gap = 0 if t < 3 else 2 * t  # two cells side by side, then drifting apart
        labels[t][(yy - 20) ** 2 + (xx - 22 + gap) ** 2 <= 36] = 2
        labels[t][(yy - 20) ** 2 + (xx - 34 - gap) ** 2 <= 36] = 3
    first = labels[0] > 0  # the seed covers both: one elongated track
    rows = [SimpleNamespace(label=i, parent=0) for i in (2, 3)]
    steady = _render(labels, {2: 100, 3: 100})
    c = SimpleNamespace(labels=labels, image=steady, lineage=rows)

    class Session(OracleSession):  # follows its two cells as one until re-prompted
        def propagate(self, start_frame, max_frames=1):
            t = start_frame
            for obj_id, prev in self.objects.items():
                ids = [i for i in np.unique(self.gt[t - 1][prev]) if i]
                self.objects[obj_id] = np.isin(self.gt[t], ids)
            logits = [np.where(m, 5.0, -5.0) for m in self.objects.values()]
            scores = [5.0 if m.any() else -5.0 for m in self.objects.values()]
            yield FrameResult(
                t,
                tuple(self.objects),
                np.asarray(logits, np.float32),
                np.asarray(scores, np.float32),
            )

    cfg = TrackConfig(detect_every=100, min_area=5, division_min_age=0)
    result = run_tracking(Session(c), OracleGenerator(c), cfg, masks=[first])
    assert result.divisions() == {}
    _released(result, labels, 5)
    # The same split with the signal halved as it happens is a division.
    dims = [f // 2 + 5 if t >= 3 else f for t, f in enumerate(_render(labels, {2: 200, 3: 200}))]
    dimming = SimpleNamespace(labels=labels, image=dims, lineage=rows)
    result = run_tracking(Session(dimming), OracleGenerator(dimming), cfg, masks=[first])
    assert len(result.divisions()[1]) == 2
    # The rounding cue alone: the elongated track may not divide, unless its limit allows it.
    rounding = TrackConfig(
        detect_every=100, min_area=5, division_min_age=0, dim_ratio=None, round_aspect=1.3
    )
    result = run_tracking(Session(c), OracleGenerator(c), rounding, masks=[first])
    assert result.divisions() == {}
    loose = TrackConfig(
        detect_every=100, min_area=5, division_min_age=0, dim_ratio=None, round_aspect=3.0
    )
    result = run_tracking(Session(c), OracleGenerator(c), loose, masks=[first])
    assert len(result.divisions()[1]) == 2


def test_without_divisions_a_split_keeps_its_id_and_an_appearance_is_a_new_track():
    """``divisions=False`` (cells that do not divide): no rule makes a mother and daughters."""
    c = _split_clip()
    cfg = TrackConfig(detect_every=100, min_area=5, divisions=False)
    result = run_tracking(OracleSession(c), OracleGenerator(c), cfg)
    # Track 1 keeps its id past the split; whatever else is found has no mother.
    assert result.lineage[1] == (0, 5, 0) and result.divisions() == {}
    assert all(parent == 0 for _, _, parent in result.lineage.values())
    c = _appearance_clip()
    cfg = TrackConfig(detect_every=1, min_area=5, contact_distance=3, divisions=False)
    result = run_tracking(OracleSession(c), OracleGenerator(c), cfg)
    assert result.divisions() == {} and result.lineage[1] == (0, 4, 0), result.lineage
    assert [v for k, v in result.lineage.items() if k != 1] == [(2, 4, 0)]
    with pytest.raises(InputError, match="divisions"):
        TrackConfig(divisions="no")


def test_counts_text_agrees_in_number():
    from napari_sam2.tracking.tracker import counts_text

    assert counts_text(12, 1) == "12 tracks, 1 division"
    assert counts_text(1, 0) == "1 track, 0 divisions"


def _check_invariants(result):
    labels, lineage = result.labels, result.lineage
    assert labels.dtype == np.int32
    present = {int(i) for i in np.unique(labels) if i}
    assert present == set(lineage)
    for tid, (start, end, parent) in lineage.items():
        frames = [t for t in range(len(labels)) if (labels[t] == tid).any()]
        assert (frames[0], frames[-1]) == (start, end)
        if parent:
            assert lineage[parent][1] < start


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    trunk = HieraConfig(
        embed_dim=16, stages=(1, 1, 1, 1), global_att_blocks=(2, 3), window_spec=(4, 4, 4, 4)
    )
    return Sam2Model(Sam2Config(name="test-small", trunk=trunk, image_size=128)).eval()


def test_track_all_with_a_model_runs_and_exports(small_model, tmp_path):
    tl = make_timelapse(n_frames=6, shape=(96, 96), n_cells=5, seed=10001)
    seeds = [tl.labels[1] == i for i in np.unique(tl.labels[1]) if i]
    gen = GeneratorConfig(
        points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0,
        stability_score_offset=0.05, box_nms_thresh=0.5,
    )  # fmt: skip
    calls = []
    result = track_all(
        small_model, tl.image, TrackConfig(detect_every=2, generator=gen), start_frame=1,
        masks=seeds, progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert result.labels.shape == tl.labels.shape and not result.labels[0].any()
    for i, seed in enumerate(seeds, start=1):
        assert np.array_equal(result.labels[1] == i, seed)  # user masks come first, unchanged
    assert calls[-1] == (5, 5) and len(result.scores) == 6
    _check_invariants(result)
    export.write_ctc(result.labels, result.lineage, tmp_path / "ctc")
    assert (tmp_path / "ctc" / "res_track.txt").exists()


def test_iter_tracking_yields_final_labels_and_the_engine_result():
    """Each frame comes with the engine's result for the tracks carried onto it (before
    the rules), so the widget's review queue can score automatic tracks."""
    from napari_sam2.tracking.tracker import iter_tracking

    c = _split_clip()
    cfg = TrackConfig(detect_every=100, min_area=5, division_min_age=0)
    steps = iter_tracking(OracleSession(c), OracleGenerator(c), cfg)
    frames = []
    while True:
        try:
            frames.append(next(steps))
        except StopIteration as stop:
            result = stop.value
            break
    assert [f.frame for f in frames] == list(range(6))
    assert frames[0].propagated is None  # seeded, not propagated
    for item in frames[1:]:
        np.testing.assert_array_equal(item.labels, result.labels[item.frame])
        assert item.propagated is not None and item.propagated.frame == item.frame
    assert frames[2].propagated.obj_ids == (1,)  # the mother, before it divides on 3
    assert set(frames[4].propagated.obj_ids) == set(result.lineage) - {1}
