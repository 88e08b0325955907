"""Command line: ``dreamsampler <command>``; each command group lives in its own module."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from rich.console import Console

from dreamsampler import __version__
from dreamsampler.cli import (
    concepts,
    config_cmd,
    conform_cmd,
    doctor,
    eval,
    live,
    patches,
    send,
    separate,
    serve,
    train,
)
from dreamsampler.cli.common import SafeRichHandler, route_library_logs
from dreamsampler.config import ConfigError

COMMAND_MODULES = (serve, send, separate, train, concepts, eval, live, doctor, patches,
                   config_cmd, conform_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dreamsampler",
        description="Text-to-music and personalized style transfer for your DAW, over OSC/MIDI.",
    )
    parser.add_argument("--version", action="version", version=f"dreamsampler {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[SafeRichHandler(show_path=False, rich_tracebacks=True,
                                  console=Console(stderr=True))],  # stdout: results
    )
    for noisy in ("httpx", "urllib3", "numba", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    route_library_logs(("huggingface_hub",))
    # diffusers passes an argument huggingface_hub deprecated: noise on every model load
    warnings.filterwarnings("ignore", message="The `local_dir_use_symlinks` argument")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"dreamsampler: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # a busy port, an unreadable file: before importing torch to classify
        print(f"dreamsampler: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from dreamsampler.engine.audio_io import AudioFileError
        from dreamsampler.engine.families import ModelLoadError
        from dreamsampler.engine.request import RequestError
        from dreamsampler.server.folder_sink import SinkError

        if isinstance(exc, ModelLoadError | SinkError | RequestError | AudioFileError):
            print(f"dreamsampler: {exc}", file=sys.stderr)
            return 1
        raise
