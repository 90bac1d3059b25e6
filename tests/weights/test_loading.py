"""Checkpoint reading, variant inference and the one-line errors for bad files."""

from __future__ import annotations

import pytest
import torch

from napari_sam2 import CheckpointError, Sam2Error, build_model, load_model
from napari_sam2.modeling.config import VARIANTS
from napari_sam2.weights.loading import infer_variant, normalize_state_dict


@pytest.fixture(scope="module")
def tiny_sd():
    torch.manual_seed(0)
    return build_model("sam2.1_hiera_tiny", image_size=256).state_dict()


def _one_line_error(path, match):
    with pytest.raises(CheckpointError, match=match) as info:
        load_model(path)
    msg = str(info.value)
    assert "\n" not in msg and isinstance(info.value, Sam2Error)
    return msg


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_inferred_from_keys_and_shapes(variant):
    model = build_model(variant, image_size=256)
    assert infer_variant(model.state_dict()) == variant


def test_roundtrip_official_format(tmp_path, tiny_sd):
    path = tmp_path / "ok.pt"
    torch.save({"model": tiny_sd}, path)
    model = load_model(path, image_size=256)
    assert model.cfg.name == "sam2.1_hiera_tiny" and not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, tiny_sd[k])


def test_normalize_state_dict_unwraps_and_strips_prefix(tiny_sd):
    wrapped = {"model": {"module." + k: v for k, v in list(tiny_sd.items())[:3]}}
    out = normalize_state_dict(wrapped)
    assert list(out) == list(tiny_sd)[:3]
    assert (
        normalize_state_dict(dict(list(tiny_sd.items())[:2])).keys()
        == dict(list(tiny_sd.items())[:2]).keys()
    )
    with pytest.raises(CheckpointError):
        normalize_state_dict({"model": {"a": 3}})
    with pytest.raises(CheckpointError):
        normalize_state_dict([1, 2])


def test_truncated_file(tmp_path, tiny_sd):
    path = tmp_path / "cut.pt"
    torch.save({"model": tiny_sd}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "cut.pt" in _one_line_error(path, "truncated|cannot read")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are my notes, not weights\n" * 10)
    _one_line_error(path, "cannot read")


def test_missing_file(tmp_path):
    _one_line_error(tmp_path / "nope.pt", "no such file")


def test_sam1_checkpoint(tmp_path):
    sam1 = {
        "image_encoder.pos_embed": torch.zeros(1, 64, 64, 768),
        "image_encoder.blocks.0.attn.rel_pos_h": torch.zeros(27, 64),
        "image_encoder.neck.0.weight": torch.zeros(256, 768, 1, 1),
        "mask_decoder.iou_token.weight": torch.zeros(1, 256),
    }
    path = tmp_path / "sam_vit_b.pth"
    torch.save(sam1, path)
    _one_line_error(path, "SAM 1")


def test_missing_key(tmp_path, tiny_sd):
    sd = dict(tiny_sd)
    del sd["memory_encoder.out_proj.weight"]
    path = tmp_path / "missing.pt"
    torch.save({"model": sd}, path)
    assert "memory_encoder.out_proj.weight" in _one_line_error(path, "missing keys")


def test_unexpected_key(tmp_path, tiny_sd):
    sd = dict(tiny_sd, extra_head=torch.zeros(3))
    path = tmp_path / "extra.pt"
    torch.save({"model": sd}, path)
    assert "extra_head" in _one_line_error(path, "unexpected keys")


def test_wrong_shape(tmp_path, tiny_sd):
    sd = dict(tiny_sd)
    sd["sam_mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    path = tmp_path / "shape.pt"
    torch.save({"model": sd}, path)
    assert "sam_mask_decoder.iou_token.weight" in _one_line_error(path, "wrong shapes")


def test_unknown_variant_name():
    with pytest.raises(Sam2Error, match="variant"):
        build_model("sam2_hiera_huge")
    with pytest.raises(Sam2Error, match="image_size"):
        build_model("sam2.1_hiera_tiny", image_size=100)
