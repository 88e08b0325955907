"""The mini music world: General MIDI rendered with FluidSynth, measures fitted on it, and the
``mini`` model trained on it here (:mod:`dreamsampler.mini.train`).

``--model mini`` loads the trained diffusers folder shipped in the package (:data:`MINI_DIR`).
"""

from __future__ import annotations

from pathlib import Path

#: the trained MusicLDM-class pipeline folder shipped with the package
MINI_DIR = Path(__file__).resolve().parent / "model"
