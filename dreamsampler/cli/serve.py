"""``dreamsampler serve`` (the main job) and ``dreamsampler generate`` (one clip, no server)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from dreamsampler.cli.common import add_config_args, config_from_args


def _cmd_serve(args: argparse.Namespace) -> int:
    from dreamsampler.server.app import serve

    config = config_from_args(args)
    asyncio.run(serve(config))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from dreamsampler.engine.families import load_model
    from dreamsampler.engine.request import GenerationRequest
    from dreamsampler.engine.sampler import sample
    from dreamsampler.server.folder_sink import FolderSink

    config = config_from_args(args)
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
    g = p.add_argument_group("engine (docs/ray.md)")
    g.add_argument("--engine", choices=["local", "ray"],
                   help="run the model here (local, default) or on Ray Serve replicas")
    g.add_argument("--ray-address", metavar="auto|HOST:PORT",
                   help="Ray cluster to join (default: start a local one on 127.0.0.1)")
    g.add_argument("--replicas", type=int, metavar="N", help="model replicas on Ray")
    g.add_argument("--gpus-per-replica", type=float, metavar="F",
                   help="GPUs per Ray replica (fractions share a GPU)")
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
