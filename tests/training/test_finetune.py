"""Fine-tuning on corrected sessions: a new checkpoint only when done, with provenance."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from napari_sam2 import load_model
from napari_sam2.errors import InputError
from napari_sam2.evaluation.synthetic import make_timelapse
from napari_sam2.training.config import init_scratch_model, micro_cells_config
from napari_sam2.training.data import Clip
from napari_sam2.training.finetune import (
    FinetuneSettings,
    describe,
    finetune,
    finetuned_checkpoints,
    new_checkpoint_path,
    read_provenance,
)


@pytest.fixture(scope="module")
def micro():
    return init_scratch_model(micro_cells_config()).eval()


@pytest.fixture(scope="module")
def clip():
    tl = make_timelapse(n_frames=3, shape=(64, 64), n_cells=3, seed=1)
    return Clip(tl.image, tl.labels)


def _digest(model) -> str:
    h = hashlib.sha1()
    for v in model.state_dict().values():
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def test_settings_freeze_on_cpu_and_refuse_bad_values():
    assert FinetuneSettings().frozen_on("cpu") and not FinetuneSettings().frozen_on("cuda:0")
    assert not FinetuneSettings(freeze_image_encoder=False).frozen_on("cpu")
    with pytest.raises(InputError, match="steps"):
        FinetuneSettings(steps=0)


def test_settings_carry_the_mask_loss_into_the_recipe():
    recipe = FinetuneSettings().train_config("cpu")
    assert (recipe.focal_alpha, recipe.focal_gamma) == (0.25, 2.0)  # the paper's focal loss
    own = FinetuneSettings(focal_alpha=0.5, focal_gamma=0.0).train_config("cpu")
    assert (own.focal_alpha, own.focal_gamma) == (0.5, 0.0) and own.freeze_image_encoder


def test_settings_for_a_base_take_its_recorded_mask_loss(micro, tmp_path):
    from napari_sam2.training.trainer import save_model

    own = tmp_path / "own.pt"
    save_model(micro, own, extra={"provenance": {"focal_alpha": 0.5, "focal_gamma": 0.0}})
    tuned = FinetuneSettings.for_base(own, steps=7)
    assert (tuned.focal_alpha, tuned.focal_gamma, tuned.steps) == (0.5, 0.0, 7)
    plain = tmp_path / "plain.pt"
    save_model(micro, plain)  # records no loss (as an official checkpoint): the paper's
    assert (
        FinetuneSettings.for_base(plain).focal_gamma,
        FinetuneSettings.for_base(None).focal_alpha,
    ) == (2.0, 0.25)
    # A registry name whose file is not here: the paper's loss, nothing downloaded.
    assert FinetuneSettings.for_base("sam2.1_hiera_tiny").focal_gamma == 2.0


def test_cli_tunes_a_base_with_its_recorded_loss_unless_the_config_says(micro, tmp_path):
    """`napari-sam2 train --init MODEL` starts from the loss the widget would use."""
    from napari_sam2.training.cli import read_config
    from napari_sam2.training.finetune import recorded_loss
    from napari_sam2.training.trainer import save_model

    own = tmp_path / "own.pt"
    save_model(micro, own, extra={"provenance": {"focal_alpha": 0.5, "focal_gamma": 0.0}})
    base = recorded_loss(own)
    cfg = read_config(None, 5, None, base)
    assert (cfg.focal_alpha, cfg.focal_gamma, cfg.steps) == (0.5, 0.0, 5)
    config = tmp_path / "c.json"
    config.write_text('{"focal_gamma": 2.0}')
    assert read_config(str(config), None, None, base).focal_gamma == 2.0  # the file wins
    assert read_config(str(config), None, None, base).focal_alpha == 0.5
    config.write_text("[1, 2]")
    with pytest.raises(InputError, match="config: .* JSON object"):
        read_config(str(config), None, None)


def test_new_checkpoint_path_never_names_an_existing_file(tmp_path):
    first = new_checkpoint_path(tmp_path, "sam2.1_hiera_tiny")
    first.write_bytes(b"x")
    second = new_checkpoint_path(tmp_path, "sam2.1_hiera_tiny")
    assert second != first and not second.exists()
    assert second.name.startswith("sam2.1_hiera_tiny-ft-")


def test_two_steps_write_a_loadable_checkpoint_and_leave_the_model(micro, clip, tmp_path):
    before = _digest(micro)
    seen = []
    target = tmp_path / "ft" / "micro-ft.pt"
    out = finetune(
        micro,
        [clip],
        target,
        FinetuneSettings(steps=2, clip_length=2),
        provenance={"base_model": "micro.pt", "sessions": ["/data/run1"]},
        progress=lambda step, total, loss: seen.append((step, total)),
    )
    assert out == target and target.is_file()
    assert seen == [(1, 2), (2, 2)]
    assert _digest(micro) == before  # the loaded model was not trained
    prov = read_provenance(target)
    assert prov["base_model"] == "micro.pt" and prov["sessions"] == ["/data/run1"]
    assert prov["steps"] == 2 and prov["freeze_image_encoder"] is True
    assert (prov["focal_alpha"], prov["focal_gamma"]) == (0.25, 2.0)  # the loss it tuned with
    assert "2 steps" in describe(prov) and "run1" in describe(prov)
    model = load_model(target)
    assert model.cfg == micro.cfg
    # Frozen encoder: its weights are the base model's; the rest moved.
    enc = [k for k in micro.state_dict() if k.startswith("image_encoder.")]
    assert all(torch.equal(model.state_dict()[k], micro.state_dict()[k]) for k in enc)
    assert [p for p, _ in finetuned_checkpoints(target.parent)] == [target]
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no scratch left


def test_a_stopped_run_writes_nothing(micro, clip, tmp_path):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 1  # stop after the first step

    target = tmp_path / "ft.pt"
    assert finetune(micro, [clip], target, FinetuneSettings(steps=3, clip_length=2),
                    should_stop=stop) is None  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_refusals(micro, clip, tmp_path):
    existing = tmp_path / "taken.pt"
    existing.write_bytes(b"user's")
    with pytest.raises(InputError, match="never replaces"):
        finetune(micro, [clip], existing, FinetuneSettings(steps=1))
    assert existing.read_bytes() == b"user's"
    empty = Clip(clip.frames, np.zeros_like(clip.labels))
    with pytest.raises(InputError, match="no labelled objects"):
        finetune(micro, [empty], tmp_path / "x.pt", FinetuneSettings(steps=1))
    with pytest.raises(InputError, match="at least one session"):
        finetune(micro, [], tmp_path / "x.pt", FinetuneSettings(steps=1))
    assert read_provenance(existing) is None


def test_cli_train_sessions_fine_tunes_from_a_model_with_the_encoder_frozen(micro, clip, tmp_path):
    import json

    import tifffile

    from napari_sam2.cli import main
    from napari_sam2.training.trainer import save_model

    base = tmp_path / "base.pt"
    save_model(micro, base)
    session = tmp_path / "run1"
    session.mkdir()
    tifffile.imwrite(tmp_path / "cells.tif", clip.frames)
    tifffile.imwrite(session / "labels.tif", clip.labels.astype(np.int32))
    meta = {"format": "napari-sam2 session", "image": {"path": str(tmp_path / "cells.tif")}}
    (session / "session.json").write_text(json.dumps(meta))
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"steps": 1, "clip_length": 2, "correction_points": 1}))
    out = tmp_path / "ft"
    args = ["train", "--init", str(base), "--sessions", str(session), "--config", str(cfg)]
    assert main([*args, "--out", str(out), "--quiet", "--threads", "1"]) == 0
    tuned = load_model(out / "model.pt")
    enc = [k for k in micro.state_dict() if k.startswith("image_encoder.")]
    assert all(torch.equal(tuned.state_dict()[k], micro.state_dict()[k]) for k in enc)
    assert main(["train", "--sessions", str(tmp_path), "--out", str(tmp_path / "x")]) == 2


def test_short_clips_always_predict_a_frame():
    from napari_sam2.training.config import TrainConfig
    from napari_sam2.training.rollout import plan_clip

    cfg = TrainConfig()
    for seed in range(200):
        plan = plan_clip(2, cfg, np.random.default_rng(seed))
        assert len(plan.init_frames) == 1, plan  # frame 1 is predicted from memory
