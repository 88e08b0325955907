"""Print what the folder sink writes by default, read back by parsers other than libsndfile.

Shows the default output rate, the frames of a 2-bar loop at 120 BPM, its ``smpl`` loop as
wavinfo reads it (the last frame must be ``frames - 1``), and what happens to a NaN clip.
Run against any checkout: ``PYTHONPATH=<checkout> python bench/audio_output_check.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import wavinfo

from dreamsampler.config import load_config
from dreamsampler.engine.request import GenerationResult
from dreamsampler.server.folder_sink import FolderSink, LoopSpec


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    rate = load_config(None, {}).output.sample_rate
    sink = FolderSink(folder, "PCM_24", rate)
    loop = GenerationResult(np.full((1, 64000), 0.1, np.float32), 16000, {"prompt": "x"})
    path = sink.write(loop, loop=LoopSpec(120.0, 2))
    smpl = wavinfo.WavInfoReader(str(path)).smpl.sample_loops[0]
    info = sf.info(str(path))
    print(f"default output.sample_rate: {rate}")
    print(f"2 bars at 120 BPM: {info.samplerate} Hz, {info.frames} frames, "
          f"smpl loop {smpl.start}..{smpl.end} (wavinfo)")
    nan = GenerationResult(np.full((1, 16000), np.nan, np.float32), 16000, {"prompt": "nan"})
    try:
        written = sink.write(nan)
    except Exception as exc:  # report whatever the sink raises
        print(f"NaN clip refused: {type(exc).__name__}: {exc}")
    else:
        audio, _ = sf.read(str(written))
        print(f"NaN clip written as {written.name}: samples {audio.min()}..{audio.max()}")


if __name__ == "__main__":
    main()
