"""``dreamsampler train ti|dreambooth|lora``: learn a concept from a folder of clips."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dreamsampler.cli.common import config_from_args
from dreamsampler.cli.model_source import check_model
from dreamsampler.engine.catalog import tiny_choices


def _cmd_train(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from dreamsampler.engine.concepts import ConceptError
    from dreamsampler.engine.families import load_model
    from dreamsampler.engine.training.augment import MixAugmenter
    from dreamsampler.engine.training.clips import ClipError, load_concept_clips
    from dreamsampler.engine.training.trainer import TrainingError, TrainSettings, train

    config = config_from_args(args)
    check_model(config)
    model = load_model(config.model.id, config.model.device, "float32")
    seconds = args.clip_seconds
    clip_samples = round(seconds * model.sample_rate)
    try:
        clips = load_concept_clips(args.clips, model.sample_rate, clip_samples,
                                   min_clips=args.min_clips, loop_short=True,
                                   captions=args.captions)
        mix = None
        if args.mix_dir is not None:
            mix = MixAugmenter.from_folder(args.mix_dir, model.sample_rate, snr_db=args.mix_snr,
                                           seed=args.seed)
    except ClipError as exc:
        print(f"dreamsampler: {exc}", file=sys.stderr)
        return 1
    settings = TrainSettings(
        method=args.method,
        name=args.name,
        steps=args.train_steps,
        lr=args.lr,
        scale_lr=args.scale_lr,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        seed=args.seed,
        placeholder_token=args.placeholder_token,
        initializer_token=args.initializer_token,
        num_vectors=args.num_vectors,
        class_word=args.class_word,
        rank=args.rank,
        alpha=args.alpha if args.alpha is not None else float(args.rank),
        prior_preservation=args.prior_preservation,
        num_class_clips=args.num_class_clips,
        mix_snr=args.mix_snr,
        mixup=args.mixup,
        mixup_probability=args.mixup_probability,
        checkpoint_every=args.checkpoint_every,
        mixed_precision=args.mixed_precision,
    )
    columns = (TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TextColumn("loss {task.fields[loss]}"),
               TimeRemainingColumn())
    try:
        with Progress(*columns, transient=not args.verbose_progress) as progress:
            task = progress.add_task(f"{args.method} {args.name}", total=None, loss="-")

            def on_step(step: int, total: int, loss: float) -> None:
                progress.update(task, completed=step, total=total, loss=f"{loss:.4f}")

            result = train(model, settings, clips, config.concepts_dir,
                           clip_paths=[c.path for c in clips], mix=mix, resume=args.resume,
                           on_step=on_step)
    except (ConceptError, TrainingError, ValueError) as exc:
        print(f"dreamsampler: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dreamsampler: interrupted; continue with --resume (checkpoints are kept)",
              file=sys.stderr)
        return 130
    print(result.folder)
    return 0


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The configuration options a training or concepts command uses (each overrides the file)."""
    g = p.add_argument_group("configuration (each overrides config.yaml)")
    g.add_argument("--config", type=Path, help="YAML config file (default: built-in defaults)")
    g.add_argument("--model", help="repo id, local folder, or a tiny random-weight "
                   f"build: {tiny_choices()}")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps")
    g.add_argument("--concepts-dir", type=Path, help="folder of trained concepts")
    g.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override any setting (repeatable)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a concept (textual inversion, DreamBooth or LoRA)")
    p.add_argument("method", choices=["ti", "dreambooth", "lora"])
    p.add_argument("--name", required=True, help="concept name (letters, digits, _ and -)")
    p.add_argument("--clips", type=Path, required=True, help="folder of the concept's clips")
    p.add_argument("--clip-seconds", type=float, default=10.24,
                   help="training clip length in seconds (10.24 for AudioLDM/MusicLDM)")
    p.add_argument("--min-clips", type=int, default=1, help="refuse fewer usable clips")
    p.add_argument("--captions", action="store_true",
                   help="train each clip with its own prompt from the .txt file of the same "
                        "name ({} stands for the concept: '{} playing C4') instead of the "
                        "method's templates")
    p.add_argument("--steps", dest="train_steps", type=int,
                   help="optimizer steps (default: ti 3000, dreambooth 300, lora 500)")
    p.add_argument("--lr", type=float,
                   help="learning rate (default: ti 5e-4 scaled by batch x accumulation, "
                   "dreambooth 1e-6, lora 1e-4)")
    p.add_argument("--scale-lr", action=argparse.BooleanOptionalAction, default=None,
                   help="multiply lr by batch x accumulation (default: on for ti)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--grad-accum", type=int, help="accumulation steps (default: ti 4, else 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--placeholder-token", help="default <NAME>")
    p.add_argument("--initializer-token", default="mean",
                   help="ti: 'mean' of all embeddings or one vocabulary token")
    p.add_argument("--num-vectors", type=int, default=1, help="ti: embedding vectors")
    p.add_argument("--class-word", default="sound",
                   help="dreambooth/lora prompt: 'a recording of a <NAME> CLASS_WORD'")
    p.add_argument("--prior-preservation", action="store_true",
                   help="dreambooth: prior loss on class clips generated by the base model")
    p.add_argument("--num-class-clips", type=int, default=4)
    p.add_argument("--rank", type=int, default=4, help="lora rank")
    p.add_argument("--alpha", type=float, help="lora alpha (default: the rank)")
    p.add_argument("--mix-dir", type=Path, help="MIX augmentation: folder of other sounds")
    p.add_argument("--mix-snr", type=float, default=20.0, help="MIX SNR in dB")
    p.add_argument("--mixup", choices=["bam", "blm"],
                   help="MusicLDM beat-synchronous mixup of tempo-compatible clips, aligned on "
                   "downbeats, ratio ~ Beta(5,5): bam in audio, blm in VAE latents")
    p.add_argument("--mixup-probability", type=float, default=0.5,
                   help="probability of mixup per cached variant")
    p.add_argument("--mixed-precision", choices=["auto", "no", "fp16", "bf16"], default="auto",
                   help="autocast on CUDA (auto: bf16 where supported, else fp16)")
    p.add_argument("--verbose-progress", action="store_true", help="keep the progress bar")
    add_model_args(p)
    p.set_defaults(func=_cmd_train)
