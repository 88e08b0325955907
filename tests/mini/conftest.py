"""A small rendering of the mini world, shared by the mini tests (FluidSynth, seconds)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dreamsampler.mini import data

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not data.SOUNDFONT.is_file(),
    reason="needs the Debian packages fluidsynth and timgm6mb-soundfont")


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every family, one clip per caption, seed 0."""
    if shutil.which("fluidsynth") is None or not data.SOUNDFONT.is_file():
        pytest.skip("needs the Debian packages fluidsynth and timgm6mb-soundfont")
    return data.build_dataset(tmp_path_factory.mktemp("mini-world"), seed=0, variants=1)


@pytest.fixture(scope="session")
def classifier(rendered: Path) -> object:
    """The instrument classifier fitted on :func:`rendered`."""
    from dreamsampler.mini.measures import InstrumentClassifier

    audio, clips = data.load_dataset(rendered)
    return InstrumentClassifier.fit(audio, [c.instrument for c in clips])
