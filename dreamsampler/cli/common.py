"""Configuration options shared by the subcommands that load a model or serve."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dreamsampler.config import Config, load_config, parse_override


def add_config_args(p: argparse.ArgumentParser) -> None:
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


_OVERRIDES = {
    "model": "model.id", "device": "model.device", "dtype": "model.dtype",
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
    return load_config(args.config, overrides)
