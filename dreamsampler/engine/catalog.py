"""What the model registry holds, by name only (imports nothing heavy: the CLI's ``--help``, the
OSC contract and the first-run check read it without loading torch).

:data:`dreamsampler.engine.families.FAMILIES` (the registry of family classes) and
:mod:`dreamsampler.engine.tiny` (the tiny builds) are checked against these tables by
``tests/test_layers.py``, so they cannot drift apart.
"""

from __future__ import annotations

PIPELINE_FAMILIES: dict[str, str] = {
    "MusicLDMPipeline": "musicldm",
    "AudioLDMPipeline": "audioldm",
    "AudioLDM2Pipeline": "audioldm2",
    "StableAudioPipeline": "stable-audio",
    "StableAudio3Pipeline": "sa3",
}
"""diffusers pipeline class (``model_index.json``'s ``_class_name``) → family name."""

FAMILY_NAMES: tuple[str, ...] = tuple(PIPELINE_FAMILIES.values())
"""Every family's name, as ``/version`` and generation records report it."""

INPAINTING_FAMILIES: frozenset[str] = frozenset({"sa3"})
"""Families whose class ``supports_inpainting`` (``/continue``, ``/inpaint``): the server refuses
the others before queuing without importing the families."""

TINY_NAMES: dict[str, str] = {
    "tiny": "musicldm", "tiny:musicldm": "musicldm", "tiny:audioldm": "audioldm",
    "tiny:audioldm2": "audioldm2", "tiny:stable-audio": "stable-audio", "tiny:sa3": "sa3",
}
"""``--model`` names of the tiny random-weight builds → their family."""


def tiny_choices() -> str:
    """The tiny model names for help texts: ``'tiny', 'tiny:musicldm', …``."""
    return ", ".join(f"'{name}'" for name in TINY_NAMES)
