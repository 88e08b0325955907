"""Shared fixtures: synthesized audio written to real files in tmp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .synth import SR, WriteAudio

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def write_audio(tmp_path: Path) -> WriteAudio:
    """Write ``data`` (``(samples,)`` or ``(samples, channels)``) to ``tmp_path / name``."""

    def _write(name: str, data: np.ndarray, sr: int = SR, **kwargs: object) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), data, sr, **kwargs)
        return path

    return _write
