#!/usr/bin/env bash
# Reproduces the bundled sam2_micro_cells from scratch on fresh synthetic clips, in stages
# as SAM 2 starts from SAM: single frames with clicks, boxes and corrective clicks
# (1: the first 1000 steps of a 1700-step schedule; 1b: 4000 more at a lower rate), then
# 8-frame clips through the memory bank with the image encoder frozen: (2) memory
# attention started local; (3) frames tracked without a prompt take the single-mask
# output; (4) a lower rate, up to 4 cells a clip. One CPU thread, about 112 min in all
# on this 2-core machine with a second run beside it (model/sam2_micro_cells.md).
# Rerun with --resume appended to continue a stopped run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/micro_cells}
napari-sam2 train --init scratch --prompt-pe-scale 2 --tie-decoder-qk \
  --config model/micro_cells_stage1.json --stop-after 1000 --out "$out/stage1" --threads 1 "${@:2}"
napari-sam2 train --init "$out/stage1/model.pt" \
  --config model/micro_cells_stage1b.json --out "$out/stage1b" --threads 1 "${@:2}"
napari-sam2 train --init "$out/stage1b/model.pt" --memory-locality-init 1.0 --freeze-image-encoder \
  --config model/micro_cells_stage2.json --out "$out/stage2" --threads 1 "${@:2}"
napari-sam2 train --init "$out/stage2/model.pt" --tracking-mask single --freeze-image-encoder \
  --config model/micro_cells_stage3.json --out "$out/stage3" --threads 1 "${@:2}"
napari-sam2 train --init "$out/stage3/model.pt" --freeze-image-encoder \
  --config model/micro_cells_stage4.json --out "$out/stage4" --threads 1 "${@:2}"
python model/export_micro.py "$out/stage4/model.pt"
