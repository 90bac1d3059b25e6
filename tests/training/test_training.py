"""Training: recipe pieces, reproducibility, resume, data readers, fine-tuning an official-format model."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import tifffile
import torch

from napari_sam2.errors import InputError
from napari_sam2.modeling.config import config_from_dict, config_to_dict
from napari_sam2.modeling.sam2 import Sam2Model
from napari_sam2.training import TrainConfig, micro_cells_config
from napari_sam2.training import prompts as sim
from napari_sam2.training.config import is_image_step
from napari_sam2.training.data import (
    Clip,
    StackClips,
    SyntheticClips,
    ctc_stack,
    tiff_stack,
    to_tensors,
)
from napari_sam2.training.loss import step_loss
from napari_sam2.training.rollout import ClipPlan, plan_clip, rollout
from napari_sam2.training.trainer import LOG, lr_factor, param_groups, save_model, train
from small_models import TINY

FAST = TrainConfig(
    steps=4,
    image_steps=1,
    clip_length=3,
    max_objects=2,
    warmup_steps=1,
    correction_points=1,
    checkpoint_every=2,
    log_every=1,
)


def tiny_model(seed: int = 0) -> Sam2Model:
    torch.manual_seed(seed)
    return Sam2Model(TINY)


def source():
    return SyntheticClips(FAST.clip_length, shape=(64, 64))


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------ recipe pieces


def test_micro_config_round_trips_and_is_small():
    cfg = micro_cells_config()
    assert config_from_dict(config_to_dict(cfg)) == cfg
    n = sum(p.numel() for p in Sam2Model(cfg).parameters())
    assert n * 2 < 20e6  # float16 file under the 20 MB budget


def test_config_from_dict_names_unknown_fields():
    data = config_to_dict(TINY)
    data["trunk"]["bogus"] = 1
    with pytest.raises(InputError, match="bogus"):
        config_from_dict(data)


def test_train_config_rejects_bad_values():
    with pytest.raises(InputError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(InputError, match="image_steps"):
        TrainConfig(steps=5, image_steps=6)
    with pytest.raises(InputError, match="prob_mask_prompt"):
        TrainConfig(prob_mask_prompt=1.5)
    with pytest.raises(InputError, match="image_every"):
        TrainConfig(image_every=-1)


def test_image_steps_come_first_then_every_kth_step_when_co_training():
    cfg = TrainConfig(steps=12, image_steps=3, image_every=4)
    kinds = ["image" if is_image_step(cfg, s) else "clip" for s in range(12)]
    assert kinds[:3] == ["image"] * 3
    # after the image phase, steps 3.. are clip, clip, clip, image, clip, clip, clip, image ...
    assert kinds[3:] == ["clip", "clip", "clip", "image"] * 2 + ["clip"]
    assert not any(is_image_step(TrainConfig(steps=5, image_steps=2), s) for s in range(2, 5))


def test_click_lies_inside_the_mask_and_box_encloses_it():
    rng = np.random.default_rng(0)
    masks = torch.zeros(2, 32, 32)
    masks[0, 5:12, 8:20] = 1
    xy, labels = sim.clicks(masks, rng)
    x, y = xy[0, 0].tolist()
    assert labels[0, 0] == 1 and masks[0, int(y), int(x)] == 1
    assert labels[1, 0] == -1  # empty mask: no point
    bxy, blabels = sim.boxes(masks, rng)
    assert blabels[0].tolist() == [2, 3]
    (x0, y0), (x1, y1) = bxy[0].tolist()
    # Noise moves corners by at most 10 % of the side.
    assert abs(x0 - 8) <= 1.2 + 1e-6 and abs(x1 - 20) <= 1.2 + 1e-6
    assert abs(y0 - 5) <= 0.7 + 1e-6 and abs(y1 - 12) <= 0.7 + 1e-6


def test_corrections_click_the_error_with_the_right_sign():
    rng = np.random.default_rng(1)
    gt = torch.zeros(2, 16, 16)
    gt[:, 2:8, 2:8] = 1
    pred = gt.clone()
    pred[0, 2:8, 5:8] = 0  # object 0: a missed part -> positive click there
    pred[1, 10:14, 10:14] = 1  # object 1: a false positive -> negative click there
    xy, labels = sim.corrections(gt, pred, rng, prob_from_gt=0.0)
    x, y = (int(v) for v in xy[0, 0])
    assert labels[0, 0] == 1 and gt[0, y, x] == 1 and pred[0, y, x] == 0
    x, y = (int(v) for v in xy[1, 0])
    assert labels[1, 0] == 0 and gt[1, y, x] == 0 and pred[1, y, x] == 1


def test_loss_backpropagates_only_the_best_of_several_masks():
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    good = (target[0] * 20 - 10)[None, None]
    logits = torch.cat([good, -good, torch.zeros_like(good)], dim=1).requires_grad_(True)
    ious = torch.tensor([[1.0, 0.0, 0.5]])
    terms = step_loss(logits, ious, torch.tensor([[5.0]]), target)
    terms.total.backward()
    grad = logits.grad.flatten(2).abs().sum(-1)[0]
    assert grad[0] > 0 and grad[1] == 0 and grad[2] == 0
    assert terms.focal < 1e-3 and terms.dice < 0.05


def test_absent_object_only_trains_presence():
    target = torch.zeros(1, 8, 8)
    logits = torch.randn(1, 3, 8, 8, requires_grad=True)
    terms = step_loss(logits, torch.rand(1, 3), torch.tensor([[3.0]]), target)
    terms.total.backward()
    assert float(logits.grad.abs().sum()) == 0.0
    assert terms.object > 1.0  # confident "present" for an absent object costs


def test_plans_follow_the_recipe():
    rng = np.random.default_rng(0)
    plans = [plan_clip(8, TrainConfig(), rng) for _ in range(400)]
    kinds = [p.prompt for p in plans]
    assert 0.4 < kinds.count("mask") / 400 < 0.6
    assert all(p.init_frames[0] == 0 and len(p.init_frames) <= 2 for p in plans)
    assert all(p.correct_frames == () for p in plans if p.prompt == "mask")
    assert all(p.correct_frames[0] == 0 for p in plans if p.prompt != "mask")
    # A single image is never mask-prompted.
    assert {plan_clip(1, TrainConfig(), rng).prompt for _ in range(50)} <= {"click", "box"}


def test_param_groups_decay_weights_not_biases_and_scale_trunk_lr():
    model = tiny_model()
    groups = param_groups(model, TrainConfig(lr=1e-3, layer_decay=0.5))
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_param[id(named["sam_mask_decoder.iou_token.weight"])]["weight_decay"] == 0.0
    assert by_param[id(named["memory_attention.layers.0.linear1.bias"])]["weight_decay"] == 0.0
    assert by_param[id(named["memory_attention.layers.0.linear1.weight"])]["weight_decay"] == 0.1
    first = by_param[id(named["image_encoder.trunk.blocks.0.mlp.layers.0.weight"])]["lr"]
    last = by_param[id(named["image_encoder.trunk.blocks.3.mlp.layers.0.weight"])]["lr"]
    # Blocks count from 1; the top block keeps the full rate, each one below loses a factor.
    assert last == pytest.approx(1e-3) and first == pytest.approx(1e-3 * 0.5**3)
    patch = by_param[id(named["image_encoder.trunk.patch_embed.proj.weight"])]["lr"]
    assert patch == pytest.approx(1e-3 * 0.5**4)


def test_lr_warms_up_then_decays_to_the_end_factor():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr_end_factor=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(100, cfg) == pytest.approx(0.1)


def test_rollout_runs_through_memory_with_gradients_everywhere():
    model = tiny_model().train()
    rng = np.random.default_rng(0)
    clip = source().sample(rng)
    ids = [int(i) for i in np.unique(clip.labels[0]) if i][:2]
    tensors = to_tensors(clip, TINY.image_size, ids)
    plan = ClipPlan((0,), "click", (0, 2))
    result = rollout(model, tensors.images, tensors.masks, plan, FAST, rng)
    # frame 0: click + 1 correction; frame 1: tracked; frame 2: tracked + 1 correction
    assert len(result.steps) == 5
    result.total().backward()
    for name in (
        "memory_attention.layers.0.cross_attn_image.k_proj.weight",
        "memory_encoder.fuser.layers.0.dwconv.weight",
        "obj_ptr_proj.layers.0.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


# ------------------------------------------------------------------ the loop


def test_fixed_seed_reproduces_the_loss_curve(tmp_path):
    train(tiny_model(), tmp_path / "a", FAST, source=source())
    train(tiny_model(), tmp_path / "b", FAST, source=source())
    a = [e["loss"] for e in read_log(tmp_path / "a" / LOG)]
    b = [e["loss"] for e in read_log(tmp_path / "b" / LOG)]
    assert len(a) == FAST.steps and a == b


def test_resume_continues_exactly(tmp_path):
    straight = tiny_model()
    train(straight, tmp_path / "s", FAST, source=source())
    stopped = tiny_model()
    calls = iter(range(100))
    train(stopped, tmp_path / "r", FAST, source=source(), should_stop=lambda: next(calls) >= 2)
    resumed = tiny_model(seed=123)  # different init: everything must come from the checkpoint
    train(resumed, tmp_path / "r", FAST, source=source(), resume=True)
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k
    log = [e["loss"] for e in read_log(tmp_path / "r" / LOG) if e["kind"] == "train"]
    assert log == [e["loss"] for e in read_log(tmp_path / "s" / LOG)]


def test_resume_refuses_a_different_recipe(tmp_path):
    train(tiny_model(), tmp_path, replace(FAST, steps=2), source=source())
    with pytest.raises(InputError, match="lr"):
        train(tiny_model(), tmp_path, replace(FAST, lr=0.1), source=source(), resume=True)


def test_cancelled_run_keeps_the_last_checkpoint(tmp_path):
    train(tiny_model(), tmp_path, replace(FAST, steps=2), source=source())
    before = (tmp_path / "model.pt").read_bytes()
    calls = iter(range(100))
    cfg = replace(FAST, steps=6)
    train(
        tiny_model(),
        tmp_path,
        cfg,
        source=source(),
        resume=True,
        should_stop=lambda: next(calls) >= 1,
    )
    assert (tmp_path / "model.pt").read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))


# ------------------------------------------------------------------ data readers


def test_tiff_pair_and_ctc_folder_become_clips(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 4000, (5, 40, 40)).astype(np.uint16)
    labels = np.zeros((5, 40, 40), np.int32)
    labels[:, 10:20, 10:20] = 3
    tifffile.imwrite(tmp_path / "img.tif", frames)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    clip = tiff_stack(tmp_path / "img.tif", tmp_path / "lab.tif")
    assert clip.frames.shape == (5, 40, 40)
    seq, gt = tmp_path / "01", tmp_path / "01_GT" / "TRA"
    seq.mkdir()
    gt.mkdir(parents=True)
    for t in range(5):
        tifffile.imwrite(seq / f"t{t:03d}.tif", frames[t])
        tifffile.imwrite(gt / f"man_track{t:03d}.tif", labels[t].astype(np.uint16))
    ctc = ctc_stack(seq)
    assert np.array_equal(ctc.labels, labels) and np.array_equal(ctc.frames, frames)
    cut = StackClips([ctc], length=3).sample(rng)
    assert cut.frames.shape == (3, 40, 40)
    t = to_tensors(cut, 64, (3,))
    assert t.images.shape == (3, 3, 64, 64) and t.masks.shape == (3, 1, 64, 64)
    assert 0.05 < float(t.masks.mean()) < 0.08  # 100 of 1600 pixels, resized


def test_mismatched_pair_is_a_one_line_error(tmp_path):
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((5, 40, 40), np.uint16))
    tifffile.imwrite(tmp_path / "lab.tif", np.zeros((4, 40, 40), np.int32))
    with pytest.raises(InputError, match="do not match"):
        tiff_stack(tmp_path / "img.tif", tmp_path / "lab.tif")


# ------------------------------------------------------------------ fine-tuning official weights


def _fixed_loss(model, tensors, seed=0) -> float:
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        plan = ClipPlan((0,), "click", (0,))
        return float(rollout(model, tensors.images, tensors.masks, plan, FAST, rng).total())


@pytest.mark.slow
def test_fine_tuning_an_official_format_checkpoint_lowers_the_loss(tmp_path):
    from napari_sam2 import build_model, load_model

    base = build_model("sam2.1_hiera_tiny", image_size=128)
    ckpt = tmp_path / "official.pt"
    torch.save({"model": base.state_dict()}, ckpt)
    model = load_model(ckpt, image_size=128)
    clip = Clip(
        *(lambda s: (s.frames, s.labels))(
            SyntheticClips(2, shape=(128, 128)).sample(np.random.default_rng(5))
        )
    )
    ids = [int(i) for i in np.unique(clip.labels[0]) if i][:2]
    tensors = to_tensors(clip, 128, ids)

    class Fixed:
        def sample(self, rng):
            return clip

    before = _fixed_loss(model, tensors)
    cfg = replace(
        FAST,
        steps=8,
        image_steps=0,
        clip_length=2,
        lr=3e-4,
        checkpoint_every=8,
        prob_mask_prompt=0.0,
    )
    path = train(model, tmp_path / "ft", cfg, source=Fixed())
    after = _fixed_loss(model, tensors)
    assert after < before
    reloaded = load_model(path, image_size=128)
    assert _fixed_loss(reloaded, tensors) == pytest.approx(after, rel=1e-4)


def test_saved_model_is_official_format_plus_config(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path / "m.pt", half=True)
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(raw) == {"model", "config"}
    assert config_from_dict(raw["config"]) == TINY
    assert all(v.dtype == torch.float16 for v in raw["model"].values() if v.is_floating_point())


def test_cli_trains_from_scratch_and_the_result_loads(tmp_path):
    from napari_sam2 import load_model
    from napari_sam2.cli import main

    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        json.dumps({"steps": 1, "image_steps": 1, "image_max_objects": 2, "correction_points": 1})
    )
    out = tmp_path / "run"
    assert (
        main(["train", "--config", str(cfg), "--out", str(out), "--quiet", "--threads", "1"]) == 0
    )
    model = load_model(out / "model.pt")
    assert model.cfg == micro_cells_config()  # the architecture comes from the file
    assert main(["train", "--config", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    # --tracking-mask sets the model's flag, and the flag travels with the checkpoint.
    out2 = tmp_path / "run2"
    args = ["--init", str(out / "model.pt"), "--tracking-mask", "single", "--out", str(out2)]
    assert main(["train", "--config", str(cfg), *args, "--quiet", "--threads", "1"]) == 0
    assert not load_model(out2 / "model.pt").cfg.multimask_output_for_tracking
