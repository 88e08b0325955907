"""``dreamsampler serve`` (the main job) and ``dreamsampler generate`` (one clip, no server)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
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
    from rich.progress import Progress

    from dreamsampler.engine.families import load_model
    from dreamsampler.engine.request import GenerationRequest
    from dreamsampler.engine.sampler import sample
    from dreamsampler.server.folder_sink import FolderSink

    config = config_from_args(args)
    log.info("config: %s", config_source(args))
    check_model(config)
    d = config.defaults
    request = GenerationRequest(
        prompt=" ".join(args.prompt),
        negative_prompt=args.negative if args.negative is not None else d.negative_prompt,
        seed=args.seed if args.seed is not None else d.seed,
        num_inference_steps=d.num_inference_steps,
        guidance_scale=d.guidance_scale,
        duration=d.duration,
        scheduler=d.scheduler,
        input_path=args.input,
        strength=args.strength if args.input else 1.0,
    )
    model = load_model(config.model.id, config.model.device, config.model.dtype)
    with Progress(transient=True) as progress:
        task = progress.add_task("denoising", total=None)
        result = sample(model, request,
                        on_step=lambda s, n: progress.update(task, completed=s, total=n))
    sink = FolderSink(config.output.dir, config.output.subtype, config.output.sample_rate)
    print(sink.write(result, args.name))
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
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("generate", help="generate one clip without a server")
    p.add_argument("prompt", nargs="+", help="text prompt")
    p.add_argument("--seed", type=int)
    p.add_argument("--negative", help="negative prompt")
    p.add_argument("--input", type=Path, help="style-transfer this audio file")
    p.add_argument("--strength", type=float, default=0.5, help="transfer strength in [0, 1]")
    p.add_argument("--name", help="file name stem")
    add_config_args(p)
    p.set_defaults(func=_cmd_generate)
