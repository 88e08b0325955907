"""``dreamsampler eval``: measure one concept, or several side by side, as the papers do."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dreamsampler.cli.common import add_config_args, config_from_args
from dreamsampler.cli.model_source import check_model

MINI_GUIDANCE = 2.5  # the mini world's evaluations unless --guidance (docs/mini.md)


def _evaluate_one(args: argparse.Namespace, name: str, out_dir: Path, clap: object) -> object:
    from rich.progress import Progress

    from dreamsampler.engine.concepts import ConceptManager, concept_dir, read_concept
    from dreamsampler.engine.families import load_model
    from dreamsampler.eval.concept_eval import (
        PromptSet,
        generate_set,
        read_generated,
        summary_settings,
        training_clips,
    )
    from dreamsampler.eval.runner import evaluate_folders

    config = config_from_args(args)
    meta = read_concept(concept_dir(config.concepts_dir, name))
    reference = training_clips(meta, args.clips)
    d = config.defaults
    settings = {"num_inference_steps": d.num_inference_steps, "guidance_scale": d.guidance_scale,
                "duration": d.duration, "scheduler": d.scheduler}
    if args.generated is not None:
        generated = read_generated(args.generated, meta)
        info = {"generated_from": str(args.generated)}
    else:
        check_model(config)
        model = load_model(config.model.id, config.model.device, config.model.dtype)
        concepts = ConceptManager(model, config.concepts_dir)
        prompts = PromptSet.load(args.prompts)
        with Progress(transient=True) as progress:
            task = progress.add_task(f"generating for {name}", total=None)
            generated = generate_set(
                model, concepts, meta, prompts, args.n, out_dir / "generated", settings,
                on_clip=lambda done, total: progress.update(task, completed=done, total=total),
            )
        info = summary_settings(settings, args.n, config.model.id)
    return evaluate_folders(
        generated.clips, reference, clap, out_dir=out_dir, concept=name,
        generated_latents=generated.latents, plots=not args.no_plots,
        info={**info, "method": meta.method, "clap": str(args.clap) if args.clap else None},
    )


def _cmd_mini(args: argparse.Namespace) -> int:
    """The mini world (docs/mini.md): the measures' own accuracy, or a model's prompt adherence."""
    import json

    if args.mini == "measures":
        from dreamsampler.mini.measures import report as measures_report

        result = measures_report()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "measures.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        print(f"report: {args.out / 'measures.json'}")
        return 0
    from rich.progress import Progress

    from dreamsampler.engine.families import ModelLoadError
    from dreamsampler.mini.evaluate import (
        markdown,
        run_adherence,
        run_transfer,
        transfer_markdown,
    )
    from dreamsampler.mini.personalize import markdown as personalization_markdown
    from dreamsampler.mini.personalize import run_personalization

    model_id = args.model or "mini"
    try:
        with Progress(transient=True) as progress:
            task = progress.add_task(f"mini-world {args.mini} of {model_id}", total=None)

            def on_clip(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            run = {"transfer": run_transfer, "adherence": run_adherence,
                   "personalization": run_personalization}[args.mini]
            result = run(model_id, args.n, args.out, guidance=args.guidance or MINI_GUIDANCE,
                         device=args.device or "cpu", on_clip=on_clip)
    except (ModelLoadError, FileNotFoundError, RuntimeError) as exc:
        print(f"dreamsampler: {exc}", file=sys.stderr)
        return 1
    if args.mini == "personalization":
        print(personalization_markdown(result), end="")
        print(f"report: {args.out / 'personalization.json'}")
        return 0
    if args.mini == "transfer":
        print(transfer_markdown(result), end="")
        print(f"report: {args.out / 'transfer.json'}, plot: {args.out / 'transfer.png'}")
        return 0
    print(markdown(result), end="")
    print(f"report: {args.out / 'adherence.json'}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.mini is not None:
        return _cmd_mini(args)
    from dreamsampler.engine.concepts import ConceptError
    from dreamsampler.eval.audio import AudioError
    from dreamsampler.eval.concept_eval import EvalSetupError
    from dreamsampler.eval.runner import compare_reports

    clap = None
    if args.clap is not None:
        from dreamsampler.eval.clap import ClapCheckpointError, load_clap

        try:
            clap = load_clap(args.clap)
        except (ClapCheckpointError, OSError) as exc:
            print(f"dreamsampler: CLAP {args.clap}: {exc}", file=sys.stderr)
            return 1
    else:
        print("dreamsampler: no --clap given: CLAP-A, CLAP-T, SIM_AA and FAD are left out",
              file=sys.stderr)
    names = list(dict.fromkeys(args.compare or [args.concept]))
    reports = {}
    try:
        for name in names:
            out_dir = args.out / name if len(names) > 1 else args.out
            reports[name] = report = _evaluate_one(args, name, out_dir, clap)
            report.print_table()  # type: ignore[attr-defined]
            print(f"report: {out_dir / 'report.json'}")
    except (ConceptError, EvalSetupError, AudioError, ValueError) as exc:
        print(f"dreamsampler: {exc}", file=sys.stderr)
        return 1
    if len(reports) > 1:
        compare_reports(reports, args.out, print_table=True)  # type: ignore[arg-type]
        print(f"comparison: {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="measure a concept: CLAP-A/T, SIM_AA, FAD, BPM/key/LUFS; table, CSV, plots"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--concept", help="the concept to evaluate")
    which.add_argument("--compare", nargs="+", metavar="NAME", help="several concepts side by side")
    which.add_argument("--mini", choices=["adherence", "personalization", "transfer",
                                          "measures"],
                       help="the mini world (docs/mini.md): a model's prompt adherence, its "
                            "concepts of the held-out instruments (TI, DreamBooth, LoRA) or its "
                            "style-transfer curve over --n seeds (default --model mini), or the "
                            "measures' own accuracy")
    p.add_argument("--n", type=int, default=8, help="clips per prompt (seeds 0..n-1)")
    p.add_argument("--prompts", type=Path,
                   help="YAML with 'reconstruction' and 'editability' prompt lists ({} = concept)")
    p.add_argument("--clap", type=Path,
                   help="CLAP model: a transformers folder or a LAION checkpoint (.pt)")
    p.add_argument("--clips", type=Path,
                   help="the concept's training clips (default: the paths in concept.yaml)")
    p.add_argument("--generated", type=Path,
                   help="evaluate these generated clips instead of generating")
    p.add_argument("--out", type=Path, default=Path("eval-report"), help="report folder")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_config_args(p)
    p.set_defaults(func=_cmd_eval)
