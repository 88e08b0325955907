"""``dreamsampler presets list``, ``dreamsampler midi ports``, ``dreamsampler audio devices``:
what a live set-up can use, without starting a server."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_presets_list(args: argparse.Namespace) -> int:
    from dreamsampler.server.presets import load_presets

    directory = args.presets_dir
    if directory is None:
        from dreamsampler.config import find_config, load_config

        directory = load_config(find_config(args.config)).live.presets_dir
    try:
        library, errors = load_presets(directory)
    except NotADirectoryError as exc:
        print(f"dreamsampler: {exc}")
        return 1
    for bank in library.banks:
        print(f"{bank.name}:")
        for name in bank.presets:
            p = library[name]
            length = f"{p.bars} bars" if p.bars is not None else f"{p.seconds:g} s"
            kind = "transfer" if p.input_clip else "text"
            print(f"  {name}  ({length}, {kind}, sinks {'+'.join(p.sinks)})  {p.prompt}")
    for error in errors:
        print(f"refused: {error}")
    return 1 if errors else 0


def _cmd_midi_ports(args: argparse.Namespace) -> int:
    from dreamsampler.server.midi_in import list_ports

    ports = list_ports(args.backend)
    for kind in ("inputs", "outputs"):
        print(f"{kind}:")
        for name in ports[kind]:
            print(f"  {name}")
    return 0


def _cmd_audio_devices(args: argparse.Namespace) -> int:
    from dreamsampler.server.audio_devices import list_devices

    try:
        devices = list_devices()
    except OSError as exc:  # PortAudio library missing
        print(f"dreamsampler: cannot list audio devices: {exc}")
        return 1
    for d in devices:
        print(f"[{d.index}] {d.name}  ({d.hostapi}, {d.max_output_channels} out, "
              f"{d.max_input_channels} in, {d.default_samplerate:g} Hz)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="live presets")
    psub = p.add_subparsers(dest="presets_command", required=True)
    q = psub.add_parser("list", help="list the presets (and the files refused, with the key)")
    q.add_argument("--presets-dir", type=Path, help="presets folder (default: from the config)")
    q.add_argument("--config", type=Path, help="config file whose live.presets_dir is used")
    q.set_defaults(func=_cmd_presets_list)

    p = sub.add_parser("midi", help="MIDI input")
    msub = p.add_subparsers(dest="midi_command", required=True)
    q = msub.add_parser("ports", help="list MIDI input and output ports")
    q.add_argument("--backend", help="mido backend, e.g. rtmidi/UNIX_JACK")
    q.set_defaults(func=_cmd_midi_ports)

    p = sub.add_parser("audio", help="audio output")
    asub = p.add_subparsers(dest="audio_command", required=True)
    q = asub.add_parser("devices", help="list audio devices (for --audio-out)")
    q.set_defaults(func=_cmd_audio_devices)
