"""The README's quick tour, offline: the ``serve --model mini`` and ``send /gen`` lines it shows,
run as written (ports and folders moved to free ones in tmp), make the note the prompt names,
judged by the classifier and pYIN on the WAV the server delivered."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import soundfile as sf
import soxr

from dreamsampler.mini import data
from dreamsampler.mini.evaluate import parse_prompt
from dreamsampler.mini.measures import estimate_pitch, pitch_correct

from ..serving import CLI, ENV, free_port, serving
from .conftest import needs_fluidsynth

README = Path(__file__).parents[2] / "README.md"


def _tour_line(start: str) -> list[str]:
    """The quick tour's command line that begins with ``start`` (its words after
    ``dreamsampler``, up to a comment or ``&``)."""
    tour = README.read_text(encoding="utf-8").split("## Quick tour", 1)[1].split("```")[1]
    line = next(x for x in tour.splitlines() if x.startswith(start))
    words = shlex.split(line.split(" #", 1)[0].rstrip(" &"))
    assert words[0] == "dreamsampler"
    return words[1:]


def _moved(words: list[str], **values: str) -> list[str]:
    """``words`` with the value after each ``--option`` named in ``values`` replaced."""
    out = list(words)
    for option, value in values.items():
        flag = "--" + option.replace("_", "-")
        out[out.index(flag) + 1] = value
    return out


@needs_fluidsynth
def test_the_quick_tour_makes_the_note_it_names(tmp_path: Path, classifier: object) -> None:
    serve = _tour_line("dreamsampler serve --model mini")
    send = _tour_line("dreamsampler send /gen")
    (tmp_path / "in").mkdir()
    port = free_port()
    serve = _moved(serve, output_dir=str(tmp_path / "out"), input_dir=str(tmp_path / "in"))
    with serving([*serve, "--device", "cpu", "--oscquery-port", "0", "--no-zeroconf"], port):
        run = subprocess.run([*CLI, send[0], "--port", str(port), *send[1:]], env=ENV,
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    done = run.stdout.strip().splitlines()[-1]
    assert done.startswith("/done '/gen' "), run.stdout
    audio, rate = sf.read(done.split("'")[-2], dtype="float32")
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    clip = soxr.resample(mono, rate, data.SAMPLE_RATE)[: data.CLIP_SAMPLES]
    instrument, pitch = parse_prompt(send[send.index("/gen") + 1])
    assert classifier.predict(clip[None]) == [instrument]  # type: ignore[attr-defined]
    assert pitch is not None and pitch_correct(estimate_pitch(clip), pitch)
