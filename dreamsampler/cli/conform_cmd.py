"""``dreamsampler conform FILE``: conform a loop or sample to a tempo, key and bars, no model.

The same :func:`dreamsampler.engine.conform.conform` as ``/conform`` and ``/gen … bpm key``;
the result is a loop WAV (acid + smpl chunks, :func:`dreamsampler.engine.bars.write_loop_wav`)
at the file's own rate and channels, with a JSON sidecar holding the conform record. Both are
written atomically, the sidecar first: on an error nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_conform(args: argparse.Namespace) -> int:
    from dreamsampler.engine.audio_io import AudioFileError, read_audio
    from dreamsampler.engine.bars import loop_file_name, write_loop_wav
    from dreamsampler.engine.conform import ConformError, conform, parse_meter
    from dreamsampler.fsutil import atomic_write_path

    try:
        meter = parse_meter(args.meter)
        audio, rate = read_audio(args.file)
        out, record = conform(audio, rate, bpm=args.bpm, key=args.key, bars=args.bars,
                              meter=meter)
    except (ConformError, AudioFileError) as exc:
        print(f"dreamsampler conform: {exc}", file=sys.stderr)
        return 1
    applied = record["applied"]
    path = (Path(args.output) if args.output else
            args.file.parent / loop_file_name(f"{args.file.stem}_conformed", applied["bpm"],
                                              applied["bars"]))
    if path.resolve() == args.file.resolve():
        print("dreamsampler conform: the output would replace the input; give -o", file=sys.stderr)
        return 1
    record = {"input_path": str(args.file), "sample_rate": rate, "conform": record}
    sidecar = path.with_suffix(".json")
    atomic_write_path(sidecar, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
    try:
        write_loop_wav(path, out, rate, applied["bpm"], applied["bars"],
                       beats_per_bar=applied["beats_per_bar"], subtype=args.subtype)
    except BaseException:
        sidecar.unlink(missing_ok=True)
        raise
    print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("conform", help="conform a loop or sample to a tempo, key and bars "
                       "(Rubber Band; no model)")
    p.add_argument("file", type=Path, help="audio file (WAV, FLAC, ...)")
    p.add_argument("--bpm", type=float, help="target tempo in BPM (default: keep the file's)")
    p.add_argument("--key", help="target key, e.g. 'F# minor', 'Bb major', Am (default: keep)")
    p.add_argument("--bars", type=int, help="bars in the output (default: the whole bars the "
                   "file holds)")
    p.add_argument("--meter", default="4/4", help="time signature N/D (default 4/4)")
    p.add_argument("-o", "--output", help="output WAV (default: beside the input, "
                   "<stem>_conformed_<bpm>bpm_<bars>bars.wav)")
    p.add_argument("--subtype", default="PCM_24", help="WAV subtype (PCM_16, PCM_24, FLOAT)")
    p.set_defaults(func=_cmd_conform)
