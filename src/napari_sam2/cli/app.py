"""The ``napari-sam2`` command line: segment, track, models, view, evaluate, stats, train.

Each subcommand is a thin wrapper around small functions that can be used from
Python as well (:func:`read_stack`, :func:`run_segment`, :func:`run_evaluate`,
...). Heavy modules (torch, napari) are imported inside the commands that need
them, so ``napari-sam2 --help`` starts fast and nothing here needs Qt except
``view``.

Exit codes: 0 success, 2 bad usage or bad input (including a corrupt
checkpoint), 1 any other failure. Errors are one line on stderr; ``--debug``
adds the traceback. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from .. import __version__
from ..engine.plans import DIRECTIONS, check_direction, plan_passes
from ..errors import CheckpointError, InputError, one_line
from ..files.atomic import atomic_path, scratch_dir, scratch_path
from ..files.ctc import export_ctc
from ..files.output_rules import check_not_input, check_output_file, check_result_folder
from ..files.prompt_files import Prompts, check_prompts, read_prompts, select_frames
from ..files.stacks import Stack, StackReadError, TiffFolder, read_stack
from ..files.tiff import label_tiff_options, read_label_tiff
from .progress import Progress

PROG = "napari-sam2"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    """argparse's complaint, raised instead of printing usage and exiting."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D102 - argparse hook
        # argparse would print the multi-line usage and sys.exit(2); main() prints
        # one line instead and returns the code.
        raise _UsageError(message, self.prog)


def parse_frame_range(text: str, num_frames: int) -> tuple[int, int]:
    """``"A:B"`` (either end may be left out) -> (start, stop) with 0 <= start < stop <= T."""
    match = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", text or "")
    if not match:
        raise InputError(f"--frames: expected A:B (e.g. 0:50), got {text!r}")
    start = int(match.group(1)) if match.group(1) else 0
    stop = int(match.group(2)) if match.group(2) else num_frames
    if not 0 <= start < stop <= num_frames:
        raise InputError(
            f"--frames: {text} is not a non-empty range within the {num_frames} frames (0:{num_frames})"
        )
    return start, stop


# --------------------------------------------------------------------------- segment


@dataclass(frozen=True)
class SegmentSummary:
    """What :func:`run_segment` wrote: the output path, frames, object ids and timings (s)."""

    out: Path
    num_frames: int
    frame_shape: tuple[int, int]
    obj_ids: tuple[int, ...]
    seconds: float
    frames_per_second: float


def load_prompts(path: str | os.PathLike, stack: Stack, frames: tuple[int, int] | None) -> Prompts:
    """Read prompts, check them against the whole stack, then re-index to ``frames``.

    Errors name the prompts file. Nothing heavy happens here, so bad prompts are
    reported before a model is loaded.
    """
    try:
        prompts = read_prompts(path)
        check_prompts(prompts, stack.num_frames, stack.frame_shape)
        if frames is not None:
            prompts = select_frames(prompts, *frames)
    except InputError as exc:
        message = str(exc)
        if not message.startswith(str(path)):
            message = f"{path}: {message.removeprefix('prompts: ')}"
        raise InputError(message) from None
    if prompts.is_empty:
        raise InputError(f"{path}: holds no prompts")
    return prompts


def check_output(out: Path, fmt: str, option: str = "--out", inputs: Sequence = ()) -> None:
    """Fail early (InputError) when ``out`` may not be written, before any compute.

    The rule is :mod:`napari_sam2.files.output_rules`: never an input, never a
    folder of the user's own files.
    """
    if fmt == "ctc":
        check_result_folder(out, "ctc", inputs, option)
        return
    if Path(out).is_dir():
        check_not_input(out, inputs, option)
        raise InputError(f"{option}: {out} is a folder; give a file name (or use --format ctc)")
    check_output_file(out, inputs, option)


def _load_model(model: str, device, image_size: int | None, quiet: bool):
    """Load a checkpoint path or registry name (downloading with a progress bar)."""
    from ..weights.loading import load_model

    bar = Progress(None, f"download {model}", unit="B", enabled=not quiet)
    net = load_model(model, device, image_size, progress=lambda done, total: bar.set(done, total))
    if bar.done:
        bar.close()
    return net


def run_segment(
    input: str | os.PathLike,
    prompts: str | os.PathLike,
    model: str,
    out: str | os.PathLike,
    *,
    direction: str = "both",
    device: str = "auto",
    dtype: str | None = None,
    frames: str | None = None,
    time_axis: int | None = None,
    channel_axis: int | None = None,
    image_size: int | None = None,
    fmt: str = "tiff",
    quiet: bool = False,
) -> SegmentSummary:
    """Segment and track the prompted objects of a stack; write a label TIFF or CTC folder.

    ``out`` receives (T, H, W) int32 labels (object ids, 0 background) for the
    selected frames. Everything cheap is checked first (input, prompts, output
    folder), then the model is loaded. The result is written to a temporary
    file next to ``out`` and moved into place at the end, so an existing
    ``out`` is untouched by any failure.
    """
    check_direction(direction, "--direction")
    if fmt not in ("tiff", "ctc"):
        raise InputError(f"--format: must be tiff or ctc, got {fmt!r}")
    out = Path(out)
    stack = read_stack(input, time_axis, channel_axis)
    window = parse_frame_range(frames, stack.num_frames) if frames is not None else None
    selected = stack.frames(*window) if window else stack
    prompt_set = load_prompts(prompts, stack, window)
    ids = prompt_set.obj_ids()
    if fmt == "ctc" and ids and ids[-1] > 65535:
        raise InputError(f"{prompts}: object id {ids[-1]} does not fit CTC's 16-bit masks")
    model_path = model if Path(model).exists() else None
    check_output(out, fmt, inputs=(input, prompts, model_path))

    started = time.monotonic()
    if fmt == "tiff":
        write = atomic_path(out, ".tif", option="--out")  # replaces ``out`` only when complete
    else:
        write = scratch_path(out, ".tif", option="--out")  # the labels, before the CTC export
    with write as tmp:
        from ..engine.precision import resolve_dtype
        from ..weights.loading import resolve_device

        dev = resolve_device(device)
        resolve_dtype(dtype, dev)  # refuse an impossible --dtype before loading the model
        net = _load_model(model, dev, image_size, quiet)
        labels = _segment_to_file(net, selected, prompt_set, direction, dtype, tmp, quiet)
        if fmt == "ctc":
            export_ctc(labels, out)
        del labels  # close the memory map before the file is moved or removed
    seconds = time.monotonic() - started
    n = selected.num_frames
    return SegmentSummary(out, n, selected.frame_shape, ids, seconds, n / max(seconds, 1e-9))


def _segment_to_file(
    net, stack: Stack, prompts: Prompts, direction: str, dtype, tmp: Path, quiet: bool
):
    """Propagate and write each frame's labels into a (T, H, W) int32 TIFF memory map.

    Frames no pass reaches stay 0. Returns the (flushed) memory map.
    """
    import tifffile

    from ..engine.replay import apply_prompts
    from ..engine.session import VideoSession

    shape = (stack.num_frames, *stack.frame_shape)
    labels = tifffile.memmap(tmp, shape=shape, dtype=np.int32, **label_tiff_options(shape))
    passes = plan_passes(direction, prompts.frames(), 0, stack.num_frames - 1)
    # "both" meets its start frame twice: the bar counts frames, not steps.
    covered = {f for p in passes for f in p.frames() if p.first <= f <= p.last}
    bar = Progress(len(covered), "segment", enabled=not quiet)
    seen: set[int] = set()
    with VideoSession(net, stack, channel_axis=stack.channel_axis, dtype=dtype) as session:
        try:
            apply_prompts(session, prompts)
        except InputError as exc:
            raise InputError(f"prompts: {exc}") from None
        for p in passes:
            for result in session.propagate(p.start, reverse=p.reverse, max_frames=p.max_frames):
                labels[result.frame] = result.label_image()
                if result.frame not in seen:
                    seen.add(result.frame)
                    bar.update()
    bar.close()
    labels.flush()
    return labels


# --------------------------------------------------------------------------- track

TRACK_FORMATS = ("tiff", "ctc", "geff", "csv")


@dataclass(frozen=True)
class TrackSummary:
    """What :func:`run_track` wrote."""

    out: Path
    num_frames: int
    num_tracks: int
    num_divisions: int
    seconds: float


def run_track(
    input: str | os.PathLike,
    model: str,
    out: str | os.PathLike,
    *,
    fmt: str = "tiff",
    detect_every: int = 1,
    clicks: str = "peaks",
    points_per_side: int = 16,
    pred_iou_thresh: float | None = None,
    stability_thresh: float | None = None,
    min_area: int = 20,
    divisions: bool = True,
    division_cue: str = "dimming",
    frames: str | None = None,
    time_axis: int | None = None,
    device: str = "auto",
    dtype: str | None = None,
    image_size: int | None = None,
    quiet: bool = False,
) -> TrackSummary:
    """Find and track every cell of a stack (:func:`napari_sam2.tracking.track_all`).

    Writes (T, H, W) int32 labels (``tiff``), a CTC folder, a GEFF folder or a
    CSV track table. Cheap checks (input, frames, output) come before the model
    is loaded. Everything is written in a temporary folder next to ``out`` and
    renamed into place when complete; an existing ``out`` is refused, never
    overwritten. Raises InputError when no cell is found at all.
    """
    from dataclasses import replace

    from ..tracking.decisions import TrackConfig, cue_settings, generator_for

    if fmt not in TRACK_FORMATS:
        raise InputError(f"--format: must be one of {', '.join(TRACK_FORMATS)}, got {fmt!r}")
    out = Path(out)
    stack = read_stack(input, time_axis)
    window = parse_frame_range(frames, stack.num_frames) if frames is not None else None
    selected = stack.frames(*window) if window else stack
    check_output(out, "ctc" if fmt in ("ctc", "geff") else fmt)
    if out.exists():
        raise InputError(f"--out: {out} already exists; remove it or choose another name")
    base = TrackConfig(generator=generator_for(clicks), **cue_settings(division_cue))
    thresholds = {}
    if pred_iou_thresh is not None:
        thresholds["pred_iou_thresh"] = pred_iou_thresh
    if stability_thresh is not None:
        thresholds["stability_score_thresh"] = stability_thresh
    cfg = replace(
        base,
        detect_every=detect_every,
        min_area=min_area,
        divisions=divisions,
        generator=replace(base.generator, points_per_side=points_per_side, **thresholds),
    )

    started = time.monotonic()
    from ..engine.precision import resolve_dtype
    from ..weights.loading import resolve_device

    dev = resolve_device(device)
    resolve_dtype(dtype, dev)  # refuse an impossible --dtype before loading the model
    net = _load_model(model, dev, image_size, quiet)
    with scratch_dir(out) as tmp_dir:
        counts = _track_into(tmp_dir, net, selected, cfg, dtype, fmt, stack.path, quiet)
        if out.exists():  # appeared while we were tracking
            raise InputError(f"--out: {out} already exists; remove it or choose another name")
        os.replace(tmp_dir / ("labels.tif" if fmt == "tiff" else "result"), out)
    return TrackSummary(out, selected.num_frames, *counts, time.monotonic() - started)


def _track_into(tmp_dir: Path, net, stack: Stack, cfg, dtype, fmt: str, path, quiet: bool):
    """Track into a memory-mapped label TIFF in ``tmp_dir`` (RAM does not grow with T),
    then export ``tmp_dir/result``; returns (number of tracks, number of divisions)."""
    import tifffile

    from ..tracking import export
    from ..tracking.tracker import track_all

    shape = (stack.num_frames, *stack.frame_shape)
    labels = tifffile.memmap(
        tmp_dir / "labels.tif", shape=shape, dtype=np.int32, **label_tiff_options(shape)
    )
    bar = Progress(stack.num_frames, "track", enabled=not quiet)
    result = track_all(
        net,
        stack.data,
        cfg,
        channel_axis=stack.channel_axis,
        dtype=dtype,
        progress=lambda done, total: bar.set(done, total),
        labels_out=labels,
    )
    bar.close()
    if not result.lineage:
        raise InputError(f"input: no cells found in {path}; nothing written")
    labels.flush()
    writers = {"csv": export.write_csv, "ctc": export.write_ctc, "geff": export.write_geff}
    if fmt in writers:
        writers[fmt](labels, result.lineage, tmp_dir / "result")
    del labels  # close the memory map before the file is moved or removed
    return len(result.lineage), len(result.divisions())


# --------------------------------------------------------------------------- models


def list_models(stream: TextIO) -> None:
    """Print the registry with the cache state of each checkpoint."""
    from ..weights.registry import CACHE_ENV, cache_dir, cache_state

    stream.write(f"cache folder: {cache_dir()}  (set {CACHE_ENV} to change it)\n")
    rows = [("name", "release", "size", "cached", "path")]
    for entry, path, present in cache_state():
        size = f"{entry.size / 1e6:.0f} MB" if entry.size else "?"
        if entry.bundled and present:
            size = f"{path.stat().st_size / 1e6:.0f} MB"
        state = (
            ("bundled" if present else "missing") if entry.bundled else ("yes" if present else "no")
        )
        rows.append((entry.name, entry.release, size, state, str(path)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)]
        stream.write("  ".join([*cells, row[4]]).rstrip() + "\n")


def download_model(name: str, quiet: bool = False) -> Path:
    """Fetch one registry checkpoint into the cache (progress bar on stderr)."""
    from ..weights.loading import download_checkpoint
    from ..weights.registry import get_entry

    entry = get_entry(name)
    bar = Progress(entry.size, f"download {name}", unit="B", enabled=not quiet)
    path = download_checkpoint(entry, progress=lambda done, total: bar.set(done, total))
    if bar.done:
        bar.close()
    return path


# --------------------------------------------------------------------------- evaluate


def run_evaluate(
    pred: str | os.PathLike, gt: str | os.PathLike, *, skip_first_last=False, ctc=False
) -> dict:
    """J, F and J&F (per object and mean) of two label TIFFs; CTC SEG/DET/TRA with ``ctc``."""
    from ..evaluation.metrics import ctc_scores, jf_scores

    pred_labels = read_label_tiff(pred, mmap=True)
    gt_labels = read_label_tiff(gt, mmap=True)
    for path, volume in ((pred, pred_labels), (gt, gt_labels)):
        reason = _intensity_like(volume)
        if reason:
            raise InputError(
                f"{path}: looks like an intensity image, not labels ({reason}); "
                "pass the label TIFF that napari-sam2 wrote"
            )
    if pred_labels.shape != gt_labels.shape:
        raise InputError(
            f"{pred}: shape {pred_labels.shape} does not match {gt} shape {gt_labels.shape}"
        )
    scores = jf_scores(pred_labels, gt_labels, skip_first_last=skip_first_last)
    report = {"pred": str(pred), "gt": str(gt), "skip_first_last": skip_first_last}
    report.update(scores.as_dict())
    if ctc:
        report["ctc"] = ctc_scores(np.asarray(pred_labels), np.asarray(gt_labels))
    return report


def _intensity_like(volume) -> str | None:
    """Why a label volume looks like a raw image (many values, noisy), or None.

    Labels are flat regions: nearly every pixel equals its right neighbour.
    A microscopy image has many distinct values that change pixel to pixel.
    Checks the first and the middle frame.
    """
    for t in sorted({0, volume.shape[0] // 2}):
        plane = np.asarray(volume[t])
        if plane.shape[-1] < 2:
            continue
        distinct = len(np.unique(plane))
        same = float(np.mean(plane[:, 1:] == plane[:, :-1]))
        if distinct > 64 and same < 0.5:
            return (
                f"frame {t} has {distinct} distinct values and only {same:.0%} of "
                "neighbouring pixels equal"
            )
    return None


def format_scores(report: dict) -> str:
    """The evaluate table: one row per object and a mean row; CTC scores below."""
    lines = [f"{'object':>8}  {'J':>6}  {'F':>6}  {'J&F':>6}"]
    for obj in report["objects"]:
        lines.append(
            f"{obj:>8}  {report['J'][obj]:6.3f}  {report['F'][obj]:6.3f}  {report['JF'][obj]:6.3f}"
        )
    lines.append(
        f"{'mean':>8}  {report['J_mean']:6.3f}  {report['F_mean']:6.3f}  {report['JF_mean']:6.3f}"
    )
    if "ctc" in report:
        c = report["ctc"]
        lines.append(f"CTC  SEG {c['SEG']:.3f}  DET {c['DET']:.3f}  TRA {c['TRA']:.3f}")
    return "\n".join(lines) + "\n"


def _write_json(path: Path, data: dict, inputs: Sequence = ()) -> None:
    check_output(path, "json", "--json", inputs)
    with atomic_path(path, ".json", option="--json") as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- view


def run_view(
    input: str | os.PathLike | None = None,
    time_axis: int | None = None,
    channel_axis: int | None = None,
) -> None:
    """Open napari with the stack (or the synthetic sample) and the SAM 2 dock widget."""
    if input is None:
        from ..evaluation.synthetic import make_timelapse

        data = make_timelapse(n_frames=40, shape=(256, 256), n_cells=12).image
        name, channel_axis = "cells (synthetic)", None
    else:
        stack = read_stack(input, time_axis, channel_axis)
        data, name, channel_axis = stack.data, stack.path.stem, stack.channel_axis
        if isinstance(data, TiffFolder):
            import dask.array as da

            data = da.from_array(data, chunks=(1, *data.frame_shape))
    from .._qt.viewer import open_viewer  # after reading: a bad input fails fast, without Qt

    open_viewer(data, name, channel_axis, title=f"{PROG}: {name}", warn=_warn)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- argparse


def _image_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 64 or value % 32:
        raise argparse.ArgumentTypeError(f"must be a multiple of 32 and >= 64, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all subcommands (each sets ``func``)."""
    parser = _Parser(
        prog=PROG,
        description="SAM 2 segmentation and tracking of cells in microscopy time-lapses.",
        epilog="Exit codes: 0 success, 2 bad usage or input, 1 other failures. See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    seg = sub.add_parser(
        "segment",
        parents=[common],
        help="segment and track prompted objects in a stack, write a label TIFF",
        description="Segment and track the prompted objects of a time-lapse; write int32 labels.",
    )
    seg.add_argument("input", help="TIFF/OME-TIFF, .npy, or a folder of TIFF frames")
    seg.add_argument(
        "--prompts",
        required=True,
        help="points.csv, boxes.csv, a mask-prompt .tif, or a folder holding them",
    )
    seg.add_argument(
        "--model", required=True, help="checkpoint name (see 'napari-sam2 models') or .pt path"
    )
    seg.add_argument("--out", required=True, help="output .tif (or folder with --format ctc)")
    seg.add_argument("--direction", choices=DIRECTIONS, default="both")
    seg.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    seg.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        help="compute precision (default: bfloat16 on CUDA, float32 elsewhere)",
    )
    seg.add_argument("--frames", metavar="A:B", help="only frames A..B-1 (prompts re-indexed)")
    seg.add_argument("--time-axis", type=int, metavar="N", help="axis holding time (default 0)")
    seg.add_argument(
        "--channel-axis", type=int, metavar="N", help="axis holding channels of 4D data"
    )
    seg.add_argument(
        "--image-size",
        type=_image_size,
        default=None,
        metavar="N",
        help="model input size (default: the model's own, 1024 for Meta's weights)",
    )
    seg.add_argument("--format", choices=("tiff", "ctc"), default="tiff", dest="fmt")
    seg.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    seg.set_defaults(func=_cmd_segment)

    trk = sub.add_parser(
        "track",
        parents=[common],
        help="find and track every cell automatically, with divisions",
        description=(
            "Find every cell with SAM 2's mask generator, track all of them with its memory, "
            "detect new and dividing cells, and write labels, CTC, GEFF or CSV tracks."
        ),
    )
    trk.add_argument("input", help="TIFF/OME-TIFF, .npy, or a folder of TIFF frames")
    trk.add_argument(
        "--model", required=True, help="checkpoint name (see 'napari-sam2 models') or .pt path"
    )
    trk.add_argument("--out", required=True, help="output file (tiff, csv) or folder (ctc, geff)")
    trk.add_argument("--format", choices=TRACK_FORMATS, default="tiff", dest="fmt")
    trk.add_argument(
        "--detect-every", type=_positive, default=1, metavar="K", help="detect every K frames (1)"
    )
    trk.add_argument(
        "--clicks",
        choices=("peaks", "grid"),
        default="peaks",
        help="where the mask generator clicks: bright blobs (fluorescence; default) or a grid",
    )
    trk.add_argument(
        "--points-per-side", type=_positive, default=16, metavar="N", help="grid size (16)"
    )
    trk.add_argument(
        "--no-divisions",
        dest="divisions",
        action="store_false",
        help="cells that do not divide: no division rule applies",
    )
    trk.add_argument(
        "--division-cue",
        choices=("dimming", "rounding"),
        default="dimming",
        help="the sign of mitosis a division needs: the signal under the mother drops "
        "(nuclear markers; default), or the mother was round (other markers)",
    )
    trk.add_argument(
        "--pred-iou-thresh",
        type=_fraction,
        metavar="X",
        help="generator IoU threshold (peaks 0.5, grid 0.7)",
    )
    trk.add_argument(
        "--stability-thresh",
        type=_fraction,
        metavar="X",
        help="generator stability (peaks 0.7, grid 0.85)",
    )
    trk.add_argument("--min-area", type=_positive, default=20, metavar="PX")
    trk.add_argument("--frames", metavar="A:B", help="only frames A..B-1")
    trk.add_argument("--time-axis", type=int, metavar="N", help="axis holding time (default 0)")
    trk.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    trk.add_argument("--dtype", choices=("float32", "bfloat16"))
    trk.add_argument(
        "--image-size",
        type=_image_size,
        default=None,
        metavar="N",
        help="model input size (default: the model's own)",
    )
    trk.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    trk.set_defaults(func=_cmd_track)

    models = sub.add_parser(
        "models",
        parents=[common],
        help="list the checkpoints and the cache, or download one",
        description="List the known checkpoints and whether each is cached, or download one.",
    )
    models.add_argument("--download", metavar="NAME", help="download this checkpoint")
    models.add_argument("--quiet", action="store_true", help="no progress bar")
    models.set_defaults(func=_cmd_models)

    view = sub.add_parser(
        "view",
        parents=[common],
        help="open napari with a stack and the SAM 2 widget",
        description="Open napari with a stack (or a synthetic sample) and the SAM 2 widget.",
    )
    view.add_argument("input", nargs="?", help="stack to open (default: synthetic sample)")
    view.add_argument("--time-axis", type=int, metavar="N", help="axis holding time (default 0)")
    view.add_argument(
        "--channel-axis", type=int, metavar="N", help="axis holding channels of 4D data"
    )
    view.set_defaults(func=_cmd_view)

    ev = sub.add_parser(
        "evaluate",
        parents=[common],
        help="score a label TIFF against ground truth (J, F, J&F; CTC with --ctc)",
        description="DAVIS J, F and J&F per object and mean; CTC SEG/DET/TRA with --ctc.",
    )
    ev.add_argument("pred", help="predicted (T, H, W) label TIFF")
    ev.add_argument("gt", help="ground-truth (T, H, W) label TIFF")
    ev.add_argument("--json", metavar="OUT.json", help="also write the scores as JSON")
    ev.add_argument("--skip-first-last", action="store_true", help="leave out first and last frame")
    ev.add_argument("--ctc", action="store_true", help="also compute CTC SEG, DET and TRA")
    ev.set_defaults(func=_cmd_evaluate)

    tr = sub.add_parser(
        "train",
        help="train or fine-tune with the SAM 2 recipe (synthetic clips, sessions, CTC, TIFF pairs)",
        description="Train SAM 2 with the paper's recipe; checkpoints, --resume, a JSON log.",
    )
    from ..training.cli import add_arguments as add_train_arguments

    add_train_arguments(tr)
    tr.set_defaults(func=_cmd_train, debug=False)

    st = sub.add_parser(
        "stats",
        parents=[common],
        help="annotation-effort table across sessions (Markdown; CSV and a plot with --out)",
        description="Clicks, boxes, mask edits, edited frames %%, clicks per clicked frame and "
        "active time per frame of each session, in the order given. See docs/review.md.",
    )
    st.add_argument("sessions", nargs="+", metavar="SESSION", help="session folder or effort.json")
    st.add_argument(
        "--out", metavar="DIR", help="write effort.csv, effort.md and effort_per_frame.png here"
    )
    st.add_argument(
        "--idle",
        type=float,
        metavar="SECONDS",
        help="gaps between events longer than this are idle, not counted (60)",
    )
    st.set_defaults(func=_cmd_stats)
    return parser


def _cmd_segment(args) -> int:
    summary = run_segment(
        args.input,
        args.prompts,
        args.model,
        args.out,
        direction=args.direction,
        device=args.device,
        dtype=args.dtype,
        frames=args.frames,
        time_axis=args.time_axis,
        channel_axis=args.channel_axis,
        image_size=args.image_size,
        fmt=args.fmt,
        quiet=args.quiet,
    )
    if not args.quiet:
        print(
            f"{PROG}: wrote {summary.out}: {summary.num_frames} frames of "
            f"{summary.frame_shape[0]} x {summary.frame_shape[1]}, objects "
            f"{list(summary.obj_ids)}, {summary.seconds:.1f} s",
            file=sys.stderr,
        )
    return EXIT_OK


def _cmd_track(args) -> int:
    summary = run_track(
        args.input,
        args.model,
        args.out,
        fmt=args.fmt,
        detect_every=args.detect_every,
        clicks=args.clicks,
        points_per_side=args.points_per_side,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_thresh=args.stability_thresh,
        min_area=args.min_area,
        divisions=args.divisions,
        division_cue=args.division_cue,
        frames=args.frames,
        time_axis=args.time_axis,
        device=args.device,
        dtype=args.dtype,
        image_size=args.image_size,
        quiet=args.quiet,
    )
    if not args.quiet:
        from ..tracking.tracker import counts_text

        found = counts_text(summary.num_tracks, summary.num_divisions)
        print(
            f"{PROG}: wrote {summary.out}: {summary.num_frames} frames, {found}, "
            f"{summary.seconds:.1f} s",
            file=sys.stderr,
        )
    return EXIT_OK


def _cmd_models(args) -> int:
    if args.download:
        print(download_model(args.download, quiet=args.quiet))
    else:
        list_models(sys.stdout)
    return EXIT_OK


def _cmd_view(args) -> int:
    run_view(args.input, args.time_axis, args.channel_axis)
    return EXIT_OK


def _cmd_train(args) -> int:
    from ..training.cli import run as run_train

    return run_train(args)


def _cmd_evaluate(args) -> int:
    if args.json:  # refused before any scoring
        check_output(Path(args.json), "json", "--json", (args.pred, args.gt))
    report = run_evaluate(args.pred, args.gt, skip_first_last=args.skip_first_last, ctc=args.ctc)
    if args.json:
        _write_json(Path(args.json), report, (args.pred, args.gt))
    sys.stdout.write(format_scores(report))
    return EXIT_OK


def _cmd_stats(args) -> int:
    from ..review.effort import IDLE_SECONDS
    from ..review.report import effort_rows, markdown_table, write_report

    if args.idle is None:
        args.idle = IDLE_SECONDS
    if not args.idle > 0:
        raise InputError(f"--idle: must be > 0 seconds, got {args.idle}")
    if args.out:
        for path in write_report(args.sessions, args.out, args.idle):
            print(f"{PROG}: wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(markdown_table(effort_rows(args.sessions, args.idle)))
    return EXIT_OK


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"{PROG}: error: {exc} (see '{exc.prog} --help')", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    # napari's event loop (view) keeps Qt's own handling of signals.
    previous = _on_sigterm() if args.command != "view" else None
    try:
        return args.func(args)
    except _Terminated:
        print(f"{PROG}: terminated (SIGTERM); partial output removed", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (InputError, CheckpointError, StackReadError) as exc:
        code = EXIT_USAGE
        error = exc
    except Exception as exc:  # anything else is a runtime failure, reported in one line
        code = EXIT_FAILURE
        error = exc
    finally:
        _restore_sigterm(previous)
    if args.debug:
        traceback.print_exception(error)
    print(f"{PROG}: error: {one_line(error)}", file=sys.stderr)
    return code


class _Terminated(BaseException):
    """SIGTERM (what a cluster scheduler sends) as an exception, so cleanup runs as for Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


def _on_sigterm():
    """Turn SIGTERM into :class:`_Terminated` (main thread only); returns the old handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
