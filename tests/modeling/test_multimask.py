"""When the decoder proposes three masks and when one: the multimask rule."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_sam2 import VideoSession
from napari_sam2.modeling.config import Sam2Config, config_from_dict, config_to_dict
from napari_sam2.modeling.sam2 import Sam2Model
from napari_sam2.training import micro_cells_config
from small_models import TINY


@pytest.mark.parametrize(
    ("tracking_multimask", "expected"),
    [(True, [True, True, False, False]), (False, [False, True, False, False])],
)
def test_rule_by_number_of_points(tracking_multimask, expected):
    model = Sam2Model(replace(TINY, multimask_output_for_tracking=tracking_multimask))
    assert [model.wants_multimask(n) for n in (0, 1, 2, 5)] == expected


def test_official_default_is_multimask_tracking_and_the_flag_round_trips():
    assert Sam2Config().multimask_output_for_tracking  # as in every official config
    single = replace(micro_cells_config(), multimask_output_for_tracking=False)
    assert config_from_dict(config_to_dict(single)) == single


@pytest.mark.parametrize("tracking_multimask", [True, False])
def test_tracked_frames_follow_the_flag(monkeypatch, tracking_multimask):
    torch.manual_seed(0)
    model = Sam2Model(replace(TINY, multimask_output_for_tracking=tracking_multimask)).eval()
    calls = []
    decode = Sam2Model.decode

    def spy(self, pix, high, xy, labels, mask_prompt, multimask):
        calls.append((0 if labels is None else labels.shape[1], multimask))
        return decode(self, pix, high, xy, labels, mask_prompt, multimask)

    monkeypatch.setattr(Sam2Model, "decode", spy)
    frames = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    with VideoSession(model, frames, spill=False) as session:
        session.add_points(0, 1, [(30.0, 30.0)], [1])
        session.segment(direction="forward", start_frame=0)
    clicked = [m for n, m in calls if n == 1]
    tracked = [m for n, m in calls if n == 0]
    assert clicked and all(clicked)  # a single click always proposes three
    assert len(tracked) >= 2 and all(m == tracking_multimask for m in tracked)
