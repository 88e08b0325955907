"""``dreamsampler separate FILE``: split a clip into stems with Demucs, here, with a progress bar.

The same stems stage as the server's ``/separate`` (:mod:`dreamsampler.engine.stems`) and the same
writer (the folder sink): ``DIR/<name>.stems/`` holding ``<name>.<source>.wav`` per source and
``<name>.stems.json``, at the configured output rate and sample format, written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dreamsampler.cli.common import config_from_args


def _cmd_separate(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from dreamsampler.engine.audio_io import read_audio
    from dreamsampler.engine.request import GenerationResult
    from dreamsampler.engine.stems import StemsError, StemsStage
    from dreamsampler.server.folder_sink import FolderSink, SinkError
    from dreamsampler.server.session import max_input_bytes

    config = config_from_args(args)
    source = Path(args.file).expanduser().resolve()
    audio, rate = read_audio(source, max_bytes=max_input_bytes(config))
    stage = StemsStage(config.stems.model, config.model.device, shifts=args.shifts,
                       overlap=args.overlap)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    try:
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task(f"loading {config.stems.model}", total=1.0)
            stage.load()
            progress.update(task, description=f"separating {source.name}")
            stems, info = stage.separate(
                audio, rate, seed=args.seed,
                on_progress=lambda f: progress.update(task, completed=f))
    except StemsError as exc:
        print(f"dreamsampler: {exc}", file=sys.stderr)
        return 1
    record = {"engine": "dreamsampler separate", "kind": "separate", "input": str(source),
              "seed": args.seed, "sample_rate": rate,
              "stems": {**info.to_record(), **stage.settings()}}
    out_dir = Path(args.output_dir).expanduser() if args.output_dir else source.parent
    sink = FolderSink(out_dir, config.output.subtype, config.output.sample_rate)
    try:
        folder = sink.write_separation(
            GenerationResult(audio=audio, sample_rate=rate, record=record, stems=stems),
            args.name)
    except SinkError as exc:
        print(f"dreamsampler: {exc}", file=sys.stderr)
        return 1
    print(folder)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("separate", help="split a clip into stems (drums, bass, other, vocals) "
                       "with Demucs, without a server")
    p.add_argument("file", type=Path, help="the audio file to separate")
    p.add_argument("-o", "--output-dir", type=Path,
                   help="folder that receives <name>.stems/ (default: the file's folder)")
    p.add_argument("--name", help="stem of the folder and file names (default: the file's)")
    p.add_argument("--seed", type=int, default=0, help="seeds Demucs' random shifts")
    p.add_argument("--shifts", type=int, default=1,
                   help="random time shifts averaged (Demucs' --shifts; 0 = none)")
    p.add_argument("--overlap", type=float, default=0.25,
                   help="overlap of Demucs' segments, 0..1 (Demucs' --overlap)")
    g = p.add_argument_group("configuration (each overrides config.yaml)")
    g.add_argument("--config", type=Path, help="YAML config file (default: built-in defaults)")
    g.add_argument("--model", dest="stems_model",
                   help="Demucs model: htdemucs, htdemucs_ft, htdemucs_6s, a local folder of "
                   "Demucs .th/.yaml files, or 'tiny' (random weights)")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps")
    g.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override any setting, e.g. --set output.sample_rate=48000")
    p.set_defaults(func=_cmd_separate)
