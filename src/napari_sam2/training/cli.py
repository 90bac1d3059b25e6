"""``napari-sam2 train``: argument parsing and progress for the training loop.

``napari-sam2 train`` and ``python -m napari_sam2.training`` are the same command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import torch

from ..errors import InputError, Sam2Error
from .config import TrainConfig, init_scratch_model, micro_cells_config, prime_memory_attention
from .finetune import recorded_loss


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        nargs="*",
        default=None,
        help="'synthetic' (fresh clips every step), session folders, CTC image folders, "
        "or IMAGE.tif:LABELS.tif pairs; mixed with equal weight (default: synthetic, "
        "or only the --sessions when given)",
    )
    p.add_argument(
        "--sessions",
        nargs="+",
        metavar="DIR",
        default=[],
        help="saved napari-sam2 session folders (their image file and labels.tif) to "
        "fine-tune on; with --init MODEL this is the widget's 'Fine-tune on these "
        "sessions...'. On a CPU the image encoder stays frozen unless "
        "--no-freeze-image-encoder",
    )
    p.add_argument(
        "--freeze-image-encoder",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the image encoder's weights fixed (default: the config's; frozen with "
        "--sessions on a CPU)",
    )
    p.add_argument(
        "--init",
        default="scratch",
        help="'scratch' (the sam2_micro_cells architecture), a registry name or a checkpoint path",
    )
    p.add_argument(
        "--prompt-pe-scale",
        type=float,
        default=1.0,
        help="with --init scratch: sharpen the prompt position encoding by this factor",
    )
    p.add_argument(
        "--tie-decoder-qk",
        action="store_true",
        help="with --init scratch: start decoder attentions with equal query/key projections",
    )
    p.add_argument(
        "--memory-locality-init",
        type=float,
        default=0.0,
        metavar="B",
        help="before training, set memory cross-attention query/key biases to B "
        "(a locality prior for untrained memory attention; 0: leave as loaded)",
    )
    p.add_argument(
        "--tracking-mask",
        choices=("best-of-3", "single"),
        help="set the model's multimask_output_for_tracking: frames tracked without a "
        "prompt keep the best of three masks by predicted IoU (official models) or the "
        "single-mask output (default: as loaded; scratch: best-of-3)",
    )
    p.add_argument("--config", help="JSON file of TrainConfig fields (others keep their defaults)")
    p.add_argument("--out", required=True, help="output folder (checkpoints, model.pt, log.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--steps", type=int, help="override the config's number of steps")
    p.add_argument(
        "--stop-after",
        type=int,
        help="stop after this many steps of the schedule (a checkpoint step); the run "
        "can later be resumed",
    )
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--validate", action="store_true", help="held-out J&F at each checkpoint")
    p.add_argument("--quiet", action="store_true")


def read_config(
    path: str | None, steps: int | None, seed: int | None, base: dict | None = None
) -> TrainConfig:
    """The TrainConfig of a run: ``base`` fields, then the JSON file's, then ``steps``/``seed``."""
    values: dict = dict(base or {})
    if path:
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"config: cannot read {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise InputError(f"config: {path} must hold a JSON object of TrainConfig fields")
        values |= loaded
        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"config: unknown training fields {unknown}")
    if steps is not None:
        values["steps"] = steps
    if seed is not None:
        values["seed"] = seed
    return TrainConfig(**values)


def build_initial_model(init: str, device: str, prompt_pe_scale: float = 1.0, tie_qk=False):
    if init == "scratch":
        return init_scratch_model(micro_cells_config(), prompt_pe_scale, tie_decoder_qk=tie_qk)
    from .. import load_model

    return load_model(init, device=device)


def make_source(data: list[str], cfg: TrainConfig):
    from .data import MixedClips, StackClips, SyntheticClips, ctc_stack, session_stack, tiff_stack

    sources, stacks = [], []
    for item in data:
        if item == "synthetic":
            sources.append(SyntheticClips(cfg.clip_length))
            continue
        path = Path(item)
        if ":" in item and not path.exists():
            image, labels = item.split(":", 1)
            stacks.append(tiff_stack(image, labels))
        elif (path / "session.json").is_file():
            stacks.append(session_stack(path))
        elif path.is_dir():
            stacks.append(ctc_stack(path))
        else:
            raise InputError(f"data: {item} is not 'synthetic', a session, a CTC folder or a pair")
    if stacks:
        sources.append(StackClips(stacks, cfg.clip_length))
    return sources[0] if len(sources) == 1 else MixedClips(sources)


def run(args: argparse.Namespace) -> int:
    from .trainer import train
    from .validation import held_out_jf

    if args.threads:
        torch.set_num_threads(args.threads)
    # From a trained checkpoint, keep the mask loss it recorded unless the config sets one.
    base = {} if args.init == "scratch" else recorded_loss(args.init)
    cfg = read_config(args.config, args.steps, args.seed, base)
    data = list(args.data) if args.data is not None else ([] if args.sessions else ["synthetic"])
    data += list(args.sessions)
    if args.sessions:
        for folder in args.sessions:
            if not (Path(folder) / "session.json").is_file():
                raise InputError(f"sessions: {folder} is not a napari-sam2 session folder")
    freeze = args.freeze_image_encoder
    if freeze is None and args.sessions and str(args.device).split(":")[0] == "cpu":
        freeze = True
    if freeze is not None:
        cfg = replace(cfg, freeze_image_encoder=bool(freeze))
    source = make_source(data, cfg)
    model = build_initial_model(args.init, args.device, args.prompt_pe_scale, args.tie_decoder_qk)
    if args.tracking_mask:
        single = args.tracking_mask == "single"
        model.cfg = replace(model.cfg, multimask_output_for_tracking=not single)
    if args.memory_locality_init:
        prime_memory_attention(model, args.memory_locality_init)
    start = time.perf_counter()

    def progress(entry) -> None:
        if args.quiet:
            return
        done = entry.step / cfg.steps
        elapsed = time.perf_counter() - start
        eta = elapsed / max(done, 1e-9) * (1 - done) if entry.step else 0
        print(
            f"step {entry.step}/{cfg.steps}  loss {entry.loss:.3f} (focal {entry.focal:.4f} "
            f"dice {entry.dice:.3f} iou {entry.iou:.3f} obj {entry.object:.3f})  "
            f"lr {entry.lr:.2e}  ETA {eta / 60:.0f} min",
            flush=True,
        )

    def validate(m) -> dict:
        return {
            f"jf_snr{snr:g}": held_out_jf(
                m, snr=snr, seeds=(cfg.val_seed,), n_frames=cfg.val_frames
            )
            for snr in (4.0, 1.0)
        }

    path = train(
        model,
        args.out,
        cfg,
        source=source,
        resume=args.resume,
        progress=progress,
        validate=validate if args.validate else None,
        until=args.stop_after,
        device=args.device,
    )
    if not args.quiet:
        print(f"model written to {path}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="napari-sam2 train", description=__doc__.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except Sam2Error as exc:
        print(f"napari-sam2 train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-sam2 train: interrupted; resume with --resume", file=sys.stderr)
        return 130
