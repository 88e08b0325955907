"""Command line: ``dreamsampler serve | generate | send``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from rich.logging import RichHandler

from dreamsampler import __version__
from dreamsampler.config import Config, ConfigError, load_config, parse_override

log = logging.getLogger("dreamsampler")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration (each overrides config.yaml)")
    g.add_argument("--config", type=Path, help="YAML config file (default: built-in defaults)")
    g.add_argument("--model", help="repo id, local folder, 'tiny' or 'tiny:audioldm'")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps")
    g.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    g.add_argument("--host", help="OSC host to bind")
    g.add_argument("--port", type=int, help="OSC UDP port")
    g.add_argument("--output-dir", type=Path, help="folder that receives the clips")
    g.add_argument("--input-dir", type=Path, action="append",
                   help="folder /transfer may read from (repeatable)")
    g.add_argument("--concepts-dir", type=Path, help="folder of trained concepts")
    g.add_argument("--steps", type=int, help="default num_inference_steps")
    g.add_argument("--guidance", type=float, help="default guidance scale")
    g.add_argument("--duration", type=float, help="default clip length in seconds")
    g.add_argument("--scheduler", help="default scheduler (ddim, dpm++, pndm, euler, lms, heun)")
    g.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override any setting, e.g. --set limits.queue_size=4 (repeatable)")


_OVERRIDES = {
    "model": "model.id", "device": "model.device", "dtype": "model.dtype",
    "host": "osc.host", "port": "osc.port", "output_dir": "output.dir",
    "input_dir": "input_dirs", "concepts_dir": "concepts_dir",
    "steps": "defaults.num_inference_steps", "guidance": "defaults.guidance_scale",
    "duration": "defaults.duration", "scheduler": "defaults.scheduler",
}


def config_from_args(args: argparse.Namespace) -> Config:
    """The validated config: file, then named options, then ``--set`` overrides.

    Raises:
        ConfigError: invalid file, key or value.
    """
    overrides: dict[str, Any] = {}
    for attr, key in _OVERRIDES.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides[key] = [str(v) for v in value] if isinstance(value, list) else (
                str(value) if isinstance(value, Path) else value
            )
    for text in args.set:
        key, value = parse_override(text)
        overrides[key] = value
    return load_config(args.config, overrides)


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


def _cmd_send(args: argparse.Namespace) -> int:
    from dreamsampler.client import OscClient, parse_cli_args

    with OscClient(args.host, args.port) as client:
        client.send(args.address, *parse_cli_args(args.args))
        ok = True
        try:
            from dreamsampler.client import is_final_for

            for reply in client.wait_for(is_final_for(args.address), args.timeout):
                print(reply)
                ok = reply.address != "/fail"
        except TimeoutError as exc:
            print(f"timeout: {exc}", file=sys.stderr)
            return 2
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dreamsampler",
        description="Text-to-music and personalized style transfer for your DAW, over OSC/MIDI.",
    )
    parser.add_argument("--version", action="version", version=f"dreamsampler {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the OSC server (the main job)")
    _add_config_args(p)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("generate", help="generate one clip without a server")
    p.add_argument("prompt", nargs="+", help="text prompt")
    p.add_argument("--seed", type=int)
    p.add_argument("--negative", help="negative prompt")
    p.add_argument("--input", type=Path, help="style-transfer this audio file")
    p.add_argument("--strength", type=float, default=0.5, help="transfer strength in [0, 1]")
    p.add_argument("--name", help="file name stem")
    _add_config_args(p)
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("send", help="send one OSC message to a server and print the replies")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the reply")
    p.add_argument("address", help="OSC address, e.g. /gen")
    p.add_argument("args", nargs="*", help="arguments; numbers are sent as int or float")
    p.set_defaults(func=_cmd_send)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, rich_tracebacks=True)],
    )
    for noisy in ("httpx", "urllib3", "numba", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"dreamsampler: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from dreamsampler.engine.audio_io import AudioFileError
        from dreamsampler.engine.families import ModelLoadError
        from dreamsampler.engine.request import RequestError
        from dreamsampler.server.folder_sink import SinkError

        if isinstance(exc, ModelLoadError | SinkError | RequestError | AudioFileError | OSError):
            print(f"dreamsampler: {exc}", file=sys.stderr)
            return 1
        raise
