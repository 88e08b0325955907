"""What the subcommands share: configuration options, and logging that prints each line once and
cannot raise."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from pathlib import Path
from typing import Any

from rich.logging import RichHandler

from dreamsampler.config import (
    CONFIG_NAME,
    Config,
    describe_source,
    find_config,
    load_config,
    parse_override,
    user_config_dir,
)
from dreamsampler.engine.catalog import tiny_choices


def add_config_args(p: argparse.ArgumentParser) -> None:
    """The configuration options; each help text ends with the built-in default."""
    g = p.add_argument_group(
        "configuration (each overrides the config file; defaults shown are the built-in ones)")
    g.add_argument("--config", type=Path,
                   help=f"YAML config file (default: ./{CONFIG_NAME}, else {CONFIG_NAME} in "
                   f"{_user_config_dir_shown()}, else the built-in defaults)")
    g.add_argument("--model", help="repo id, local folder, or a tiny random-weight "
                   f"build: {tiny_choices()}")
    g.add_argument("--stems-model", help="Demucs model for stems: htdemucs, htdemucs_ft, "
                   "htdemucs_6s, a local folder or 'tiny'")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps")
    g.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                   help="model precision (half precision on a GPU only)")
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
    g.add_argument("--presets-dir", type=Path, help="folder of preset YAML files")
    g.add_argument("--midi-in", action="append", metavar="PORT",
                   help="MIDI input port: name, substring or virtual:NAME (repeatable)")
    g.add_argument("--midi-backend", help="mido backend, e.g. rtmidi/UNIX_JACK")
    g.add_argument("--midi-map", type=Path, help="MIDI map YAML (learned bindings saved there)")
    g.add_argument("--audio-out", metavar="DEVICE",
                   help="play clips on this audio device (name substring or index)")
    g.add_argument("--tempo", type=float, help="session tempo in BPM")
    g.add_argument("--link", action="store_true", default=None,
                   help="follow Ableton Link (needs the 'link' extra)")
    g.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override any setting, e.g. --set limits.queue_size=4 (repeatable)")
    show_defaults(p)


def _user_config_dir_shown() -> str:
    path = str(user_config_dir())
    home = str(Path.home())
    return "~" + path[len(home):] if path.startswith(home) else path


def _default_of(dotted: str) -> Any:
    node: Any = Config()
    for key in dotted.split("."):
        node = getattr(node, key)
    return node


def show_defaults(p: argparse.ArgumentParser) -> None:
    """Append ``(default: X)`` from :class:`Config` to the help of every option that overrides a
    config key (their argparse default is ``None``: "not given", so the file's value stands)."""
    for action in p._actions:
        key = _OVERRIDES.get(action.dest)
        if key is None or action.help is None or "(default" in action.help:
            continue
        value = _default_of(key)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "none"
        elif isinstance(value, bool):
            value = "on" if value else "off"
        elif value is None:
            value = "none"
        elif isinstance(value, Path) and not value.is_absolute() and not str(value).startswith("~"):
            value = f"{value}, next to the config file, or in {_user_config_dir_shown()}"
        action.help += f" (default: {value})"


_OVERRIDES = {
    "model": "model.id", "device": "model.device", "dtype": "model.dtype",
    "stems_model": "stems.model",
    "host": "osc.host", "port": "osc.port", "output_dir": "output.dir",
    "input_dir": "input_dirs", "concepts_dir": "concepts_dir",
    "steps": "defaults.num_inference_steps", "guidance": "defaults.guidance_scale",
    "duration": "defaults.duration", "scheduler": "defaults.scheduler",
    # serve only (absent elsewhere: getattr gives None)
    "oscquery_port": "oscquery.port", "oscquery": "oscquery.enabled",
    "zeroconf": "oscquery.zeroconf",
    "engine": "engine.kind", "ray_address": "engine.ray_address",
    "replicas": "engine.replicas", "gpus_per_replica": "engine.gpus_per_replica",
    "presets_dir": "live.presets_dir", "midi_in": "live.midi_in",
    "midi_backend": "live.midi_backend", "midi_map": "live.midi_map",
    "audio_out": "live.audio_out", "tempo": "live.tempo", "link": "live.link",
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
    return load_config(find_config(args.config), overrides)


def config_source(args: argparse.Namespace) -> str:
    """Which config file is in effect for ``args`` (for the start-up log)."""
    return describe_source(find_config(args.config))


#: library → its logging module, which adds a plain stderr handler to the library's logger
_LIBRARY_LOGGING = {"huggingface_hub": "huggingface_hub.utils.logging",
                    "diffusers": "diffusers.utils.logging",
                    "transformers": "transformers.utils.logging"}


def route_library_logs(libraries: tuple[str, ...] = tuple(_LIBRARY_LOGGING)) -> None:
    """Send these libraries' log records only through our (rich) root handler.

    huggingface_hub, diffusers and transformers each add a plain stderr handler to their logger
    when imported; huggingface_hub also propagates, so each of its lines was printed twice (plain,
    then by rich). Importing the logging module first makes the handler exist, then it is removed
    and the records propagate. diffusers and transformers import torch: route them only in commands
    that load a model anyway.
    """
    for library in libraries:
        importlib.import_module(_LIBRARY_LOGGING[library])
        logger = logging.getLogger(library)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


class SafeRichHandler(RichHandler):
    """A :class:`rich.logging.RichHandler` that cannot raise.

    Rendering a rich traceback reads source files; with no file descriptor left (``EMFILE``) that
    raised out of ``emit`` and, from the event loop's exception handler, out of the loop. Here any
    error while rendering falls back to one plain line on stderr, and an error there is dropped.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            super().emit(record)
        except Exception:
            with contextlib.suppress(Exception):  # logging must never take the process down
                sys.stderr.write(f"{record.levelname} {record.getMessage()}\n")
