"""VideoSession on microscopy-like input, its errors, and its bounded state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2 import InputError, VideoSession, build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("sam2.1_hiera_tiny", image_size=256)


def _stack(t=5, h=90, w=140, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    frames = np.empty((t, h, w), dtype)
    for i in range(t):
        blob = ((yy - 40) ** 2 + (xx - 50 - 3 * i) ** 2) < 300
        frames[i] = (200 + 3000 * blob + rng.normal(0, 50, (h, w))).clip(0, 65535).astype(dtype)
    return frames


def test_uint16_non_square_comes_back_at_frame_size(model):
    frames = _stack()
    with VideoSession(model, frames) as s:
        r = s.add_points(0, 7, [(40, 50)], [1])
        assert r.logits.shape == (1, 90, 140) and r.logits.dtype == np.float32
        assert r.obj_ids == (7,)
        results = list(s.propagate())
        assert [x.frame for x in results] == list(range(5))
        labels = s.segment("both")
    assert labels.shape == (5, 90, 140) and labels.dtype == np.int32
    assert set(np.unique(labels)) <= {0, 7}


def test_uint16_not_cut_to_8_bits(model):
    """A 16-bit stack whose signal lies above 255 still gives a varied input."""
    frames = _stack()
    s = VideoSession(model, frames)
    x = s.source.get(0)
    assert float(x.std()) > 0.1  # not saturated or flattened
    lo, hi = s.source.intensity.limits[0]
    assert hi > 255


def test_dask_array_is_read_lazily(model):
    da = pytest.importorskip("dask.array")
    frames = np.repeat(_stack(t=1), 40, axis=0)
    reads = []

    def load(block, block_info=None):
        reads.append(block_info[None]["array-location"][0][0] if block_info else None)
        return block

    lazy = da.from_array(frames, chunks=(1, 90, 140)).map_blocks(load, dtype=frames.dtype)
    s = VideoSession(model, lazy)
    s.add_points(0, 1, [(40, 50)], [1])
    n = len(list(s.propagate(max_frames=3)))
    assert n == 3
    # Only the intensity sample (8 frames) and the frames near the tracking front are read.
    assert len({r for r in reads if r is not None}) <= 8 + 3 + 2


def test_grayscale_uint8_and_contrast_limits(model):
    frames = (_stack(dtype=np.uint16) // 16).astype(np.uint8)
    s = VideoSession(model, frames, contrast_limits=(0, 255))
    assert s.source.intensity.limits == ((0.0, 255.0),)
    s.add_box(1, 1, (20, 30, 60, 80))
    assert len(list(s.propagate())) == 4


def test_multichannel_channel_axis(model):
    frames = np.stack([_stack(), _stack(seed=1)], axis=1)  # (T, C, H, W)
    s = VideoSession(model, frames, channel_axis=1)
    assert s.frame_shape == (90, 140)
    s.add_points(0, 1, [(40, 50)], [1])


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda s: s.add_points(0, 1, [(400, 50)], [1]), "points"),
        (lambda s: s.add_points(0, 1, [(-1, 5)], [1]), "points"),
        (lambda s: s.add_points(9, 1, [(40, 50)], [1]), "frame"),
        (lambda s: s.add_points(-1, 1, [(40, 50)], [1]), "frame"),
        (lambda s: s.add_mask(0, 1, np.ones((10, 10), bool)), "mask"),
        (lambda s: s.add_mask(0, 1, np.full((90, 140), 3)), "mask"),
        (lambda s: s.add_points(0, 1, np.zeros((0, 2)), []), "points"),
        (lambda s: s.add_points(0, 1, [(40, 50)], [2]), "labels"),
        (lambda s: s.add_points(0, 1, [(40, 50)], [1, 0]), "labels"),
        (lambda s: s.add_box(0, 1, (1, 2, 3)), "box"),
        (lambda s: s.add_points(0, "a", [(40, 50)], [1]), "obj_id"),
        (lambda s: s.remove_object(99), "obj_id"),
        (lambda s: list(s.propagate(start_frame=12)), "start_frame"),
    ],
)
def test_bad_input_one_line_and_session_usable(model, call, match):
    s = VideoSession(model, _stack())
    s.add_points(0, 1, [(40, 50)], [1])
    before = s.obj_ids
    with pytest.raises(InputError, match=match) as info:
        call(s)
    assert "\n" not in str(info.value) and str(info.value).startswith(match)
    assert s.obj_ids == before
    assert len(list(s.propagate())) == 5  # still usable


def test_nan_frames(model):
    frames = _stack().astype(np.float32)
    frames[2, 5, 5] = np.nan
    with pytest.raises(InputError, match="frames"):
        VideoSession(model, frames)  # percentiles see the NaN in the sampled frames
    frames = _stack(t=20).astype(np.float32)
    frames[12, 5, 5] = np.nan  # not among the sampled frames
    s = VideoSession(model, frames)
    s.add_points(0, 1, [(40, 50)], [1])
    with pytest.raises(InputError, match="frame 12"):
        list(s.propagate())


def test_propagate_without_prompts(model):
    s = VideoSession(model, _stack())
    with pytest.raises(InputError, match="prompts"):
        list(s.propagate())


def test_state_is_bounded(model):
    """After a long propagation only the window stays in RAM; older outputs are spilled."""
    frames = np.repeat(_stack(t=1), 40, axis=0)
    s = VideoSession(model, frames)
    s.add_points(0, 1, [(40, 50)], [1])
    for _ in s.propagate():
        pass
    track = s._tracks[1]
    assert len(track.recent) == model.cfg.max_obj_ptrs_in_encoder
    assert len(s._features) <= 4
    assert len(list(s._bank._spill.dir.iterdir())) == 40 - 1 - 16


def test_cancel_between_frames(model):
    s = VideoSession(model, _stack(t=5))
    s.add_points(0, 1, [(40, 50)], [1])
    it = s.propagate()
    first = [next(it), next(it)]
    it.close()
    assert [r.frame for r in first] == [0, 1]
    assert 2 not in s._tracks[1].tracked


def test_clear_frame_and_reset(model):
    s = VideoSession(model, _stack())
    s.add_points(0, 1, [(40, 50)], [1])
    s.add_points(0, 2, [(60, 100)], [1])
    r = s.clear_frame(0, obj_id=2)
    assert r.obj_ids == (1, 2) and (r.logits[1] <= -1000).all()
    s.reset()
    assert s.obj_ids == ()


def test_disk_feature_cache_skips_encoder_and_matches(model, tmp_path, monkeypatch):
    frames = _stack(t=4)
    first = VideoSession(model, frames, feature_dir=tmp_path)
    first.add_points(0, 1, [(40, 50)], [1])
    expected = [r.logits for r in first.propagate()]
    assert len(list(tmp_path.rglob("*.pt"))) == 4

    calls = []
    original = model.encode_image
    monkeypatch.setattr(model, "encode_image", lambda x: calls.append(1) or original(x))
    second = VideoSession(model, frames, feature_dir=tmp_path)
    second.add_points(0, 1, [(40, 50)], [1])
    got = [r.logits for r in second.propagate()]
    assert calls == []  # every frame came from disk
    for a, b in zip(expected, got):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # Different data: a different key, so nothing stale is read.
    other = VideoSession(model, frames[::-1].copy(), feature_dir=tmp_path)
    assert other._disk_features.dir != second._disk_features.dir


def test_default_starts_earliest_forward_latest_backward(model):
    s = VideoSession(model, _stack(t=6))
    s.add_points(1, 1, [(40, 50)], [1])
    s.add_points(4, 1, [(40, 60)], [1])
    assert [r.frame for r in s.propagate()] == [1, 2, 3, 4, 5]
    assert [r.frame for r in s.propagate(reverse=True)] == [4, 3, 2, 1, 0]
    labels = s.segment("both")  # forward from frame 1, then back from frame 1
    assert labels.shape[0] == 6


def test_unclosed_session_leaves_no_spill_folder(model):
    import gc

    s = VideoSession(model, _stack(t=3))
    folder = s._bank._spill.dir
    assert folder.exists()
    del s
    gc.collect()
    assert not folder.exists()


def test_bfloat16_session_tracks_like_float32(monkeypatch):
    """The bf16 path runs end to end (emulated here when the CPU lacks bf16 units).

    Speed needs the hardware; agreement with float32 does not.
    """
    from napari_sam2.engine import precision
    from napari_sam2.evaluation.synthetic import make_timelapse

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    torch.manual_seed(0)
    size = 64  # emulated bf16 products are slow
    model = build_model("sam2.1_hiera_tiny", image_size=size)
    sample = make_timelapse(4, (size, size), n_cells=4, seed=1)
    ids = [int(i) for i in np.unique(sample.labels[0]) if i][:2]
    labels = {}
    for dtype in ("float32", "bfloat16"):
        with VideoSession(model, sample.image, dtype=dtype) as session:
            assert session.dtype == getattr(torch, dtype)
            for i in ids:
                session.add_mask(0, i, sample.labels[0] == i)
            labels[dtype] = np.stack([r.label_image() for r in session.propagate()])
    a, b = labels["float32"], labels["bfloat16"]
    union = (a > 0) | (b > 0)
    assert union.sum() > 50
    assert ((a == b) & union).sum() / union.sum() > 0.9


def _batch_sizes(model, monkeypatch) -> list[int]:
    """The number of objects of every ``track_step`` call from now on, appended as they run."""
    sizes = []
    track_step = type(model).track_step

    def counting(self, feats, n, *args, **kw):
        sizes.append(n)
        return track_step(self, feats, n, *args, **kw)

    monkeypatch.setattr(type(model), "track_step", counting)
    return sizes


def test_objects_prompted_on_different_frames_run_as_one_batch(model, monkeypatch):
    """Objects prompted on frames 0 and 1 reach the same memory layout from frame 8 on;
    their object-pointer offsets differ, yet they run as one batch, and each object's
    logits equal those of a session that tracks it alone."""
    frames = np.concatenate([_stack(t=6), _stack(t=6, seed=1)])
    clicks = {1: (0, (40, 50)), 2: (1, (40, 80))}

    def run(ids):
        s = VideoSession(model, frames)
        for i in ids:
            f, rc = clicks[i]
            s.add_points(f, i, [rc], [1])
        out = {r.frame: r for r in s.propagate(start_frame=0)}
        s.close()
        return out

    sizes = _batch_sizes(model, monkeypatch)
    both = run([1, 2])
    assert sizes[-4:] == [2, 2, 2, 2]  # frames 8-11: one batch of both objects
    monkeypatch.undo()
    for i in (1, 2):
        alone = run([i])
        for t in range(8, 12):
            got = both[t].mask_logits[both[t].obj_ids.index(i)]
            np.testing.assert_allclose(got, alone[t].mask_logits[0], atol=1e-4)


def test_cpu_batches_are_capped(model, monkeypatch):
    """Larger CPU batches measured slower per object: a group runs in batches of at most the cap."""
    from napari_sam2.engine import session as session_mod

    monkeypatch.setattr(session_mod, "CPU_MAX_BATCH", 2)
    sizes = _batch_sizes(model, monkeypatch)
    with VideoSession(model, _stack(t=3)) as s:
        for i, col in enumerate((30, 60, 90)):
            s.add_points(0, i + 1, [(40, col)], [1])
        sizes.clear()
        list(s.propagate(start_frame=1, max_frames=1))
    assert sizes == [2, 1]
    assert session_mod.max_batch("cuda") > 1000


def test_frame_range_limits_tracking_and_keeps_results_inside(model):
    """An object with a frame range is neither tracked nor drawn outside it; inside
    it, results equal those of an unlimited object (other objects are unaffected)."""
    frames = _stack(t=6)
    with VideoSession(model, frames) as free, VideoSession(model, frames) as ranged:
        for s in (free, ranged):
            s.add_points(1, 3, [(40, 53)], [1])
            s.add_points(1, 4, [(20, 20)], [1])
        ranged.set_frame_range(3, 1, 3)
        assert ranged.frame_range(3) == (1, 3) and ranged.frame_range(4) == (0, 5)
        a = {r.frame: r for r in free.propagate(1)}
        b = {r.frame: r for r in ranged.propagate(1)}
        backward = {r.frame: r for r in ranged.propagate(1, reverse=True)}
    for t in (2, 3):
        np.testing.assert_allclose(b[t].logits, a[t].logits, atol=1e-5)
    for t in (4, 5):
        assert b[t].object_scores[0] < -100 and not b[t].masks[0].any()
        np.testing.assert_allclose(b[t].logits[1], a[t].logits[1], atol=1e-5)
        assert 3 not in b[t].predicted_ids()
    assert backward[0].object_scores[0] < -100  # before the range: not tracked either way


def test_frame_range_errors_and_prompts_outside_widen_it(model):
    with VideoSession(model, _stack(t=6)) as s:
        s.add_points(2, 1, [(40, 53)], [1])
        with pytest.raises(InputError, match=r"^first: object 1 has a prompt on frame 2"):
            s.set_frame_range(1, 3, 5)
        with pytest.raises(InputError, match=r"^last: frame 1 is before first frame 2"):
            s.set_frame_range(1, 2, 1)
        with pytest.raises(InputError, match=r"^last: "):
            s.set_frame_range(1, 0, 6)
        with pytest.raises(InputError, match=r"^obj_id: no object with id 9"):
            s.set_frame_range(9, 0, 1)
        s.set_frame_range(1, 1, 3)
        list(s.propagate(2))
        s.add_points(5, 1, [(40, 60)], [1])  # a correction after the range's end
        assert s.frame_range(1) == (1, 5)
        s.set_frame_range(1, 2, 5)  # frame 1's output goes with it
        assert 1 not in s._tracks[1].tracked
        results = {r.frame: r for r in s.propagate(2)}
    assert set(results) == {2, 3, 4, 5}
    assert all(results[t].object_scores[0] > -100 for t in (3, 4))
