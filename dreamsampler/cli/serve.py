"""``dreamsampler serve`` (the main job) and ``dreamsampler generate`` (one clip, no server)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from dreamsampler.cli.common import (
    add_config_args,
    config_from_args,
    config_source,
)
from dreamsampler.cli.model_source import check_model
from dreamsampler.config import Config, user_config_dir
from dreamsampler.server.ports import check_osc_port

log = logging.getLogger(__name__)


def raise_open_file_limit(wanted: int = 8192) -> None:
    """Raise the soft open-file limit toward the hard one (many clients, files and sockets; the
    usual soft limit of 1024 was reachable with idle connections)."""
    try:
        import resource
    except ImportError:  # Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Log an error the event loop caught (one line, no traceback rendering) and serve on."""
    exc = context.get("exception")
    with contextlib.suppress(Exception):
        log.error("event loop: %s%s", context.get("message", "error"),
                  f": {type(exc).__name__}: {exc}" if exc is not None else "")


async def _serve(config: Config) -> None:
    from dreamsampler.server.app import serve

    asyncio.get_running_loop().set_exception_handler(_loop_exception)
    await serve(config)


def _cmd_serve(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    log.info("config: %s", config_source(args))
    presets = config.live.presets_dir
    if not presets.exists() and presets.is_relative_to(user_config_dir()):
        presets.mkdir(parents=True, exist_ok=True)  # the default place: /preset/save writes here
        log.info("created the presets folder %s", presets)
    check_osc_port(config.osc.host, config.osc.port)
    check_model(config)
    raise_open_file_limit()
    asyncio.run(_serve(config))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    """One clip through the same path as the server: a typed job → service → engine → sinks."""
    from rich.progress import Progress

    from dreamsampler.engine.jobs import JobProgress
    from dreamsampler.server.app import make_engine
    from dreamsampler.server.delivery import GenerationParams, Update
    from dreamsampler.server.preset_book import PresetBook
    from dreamsampler.server.service import JobError, Service

    config = config_from_args(args)
    log.info("config: %s", config_source(args))
    check_model(config)
    if args.input is not None:  # the file named on the command line may be anywhere
        folder = Path(args.input).expanduser().resolve().parent
        config = config.model_copy(update={"input_dirs": [*config.input_dirs, folder]})
    params = GenerationParams(
        prompt=" ".join(args.prompt), negative_prompt=args.negative, seed=args.seed,
        input_path=str(Path(args.input).expanduser().resolve()) if args.input else None,
        strength=args.strength if args.input else None,
        bpm=args.bpm, key=args.key, bars=args.bars, meter=args.meter, conform=args.conform,
    )

    async def run() -> Path | None:
        presets = PresetBook(config.live.presets_dir, load=False)  # no live use here
        service = Service(config, make_engine(config), presets=presets)
        await service.start()
        try:
            with Progress(transient=True) as progress:
                task = progress.add_task("denoising", total=None)

                def on_update(update: Update) -> None:
                    if isinstance(update, JobProgress):
                        progress.update(task, completed=update.step, total=update.total)

                job = service.job(params, transfer=args.input is not None, name=args.name,
                                  reply=on_update)
                return (await service.run(job)).path
        finally:
            await service.close()

    try:
        path = asyncio.run(run())
    except JobError as exc:
        print(f"dreamsampler: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the OSC server (the main job)")
    add_config_args(p)
    g = p.add_argument_group("discovery (OSCQuery)")
    g.add_argument("--oscquery-port", type=int, metavar="N",
                   help="OSCQuery HTTP port (default 9002; 0 picks a free one)")
    g.add_argument("--no-oscquery", dest="oscquery", action="store_const", const=False,
                   help="do not serve OSCQuery (and do not advertise)")
    g.add_argument("--no-zeroconf", dest="zeroconf", action="store_const", const=False,
                   help="serve OSCQuery but do not advertise it over mDNS")
    g = p.add_argument_group("engine (docs/ray.md)")
    g.add_argument("--engine", choices=["local", "process", "ray"],
                   help="run the model in a worker thread (local, default), in a supervised "
                   "child process restarted after a crash (process), or on Ray Serve replicas")
    g.add_argument("--ray-address", metavar="auto|HOST:PORT",
                   help="Ray cluster to join (default: start a local one on 127.0.0.1)")
    g.add_argument("--replicas", type=int, metavar="N", help="model replicas on Ray")
    g.add_argument("--gpus-per-replica", type=float, metavar="F",
                   help="GPUs per Ray replica (fractions share a GPU)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("generate", help="generate one clip without a server")
    p.add_argument("prompt", nargs="+", help="text prompt")
    p.add_argument("--seed", type=int, help="random seed; default (or -1): a fresh one, "
                   "written in the file name and the sidecar")
    p.add_argument("--negative", help="negative prompt")
    p.add_argument("--input", type=Path, help="style-transfer this audio file")
    p.add_argument("--strength", type=float, default=0.5, help="transfer strength in [0, 1]")
    p.add_argument("--name", help="file name stem")
    g = p.add_argument_group("loops that lock (docs/conform.md)")
    g.add_argument("--bpm", type=float, help="tempo to make and conform the clip to (BPM; "
                   "default: live.tempo); turns conform on")
    g.add_argument("--key", help="key to conform to, e.g. 'F# minor', 'Bb major', Am; turns "
                   "conform on")
    g.add_argument("--bars", type=int, help="clip length in whole bars")
    g.add_argument("--meter", help="time signature N/D (default 4/4)")
    g.add_argument("--conform", type=int, choices=[0, 1],
                   help="1: conform (stretch, shift, downbeat, loop seam); 0: only cut to bars")
    add_config_args(p)
    p.set_defaults(func=_cmd_generate)
