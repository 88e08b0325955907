"""The model families by diffusers pipeline class (the registry), and loading a model.

A family adapter (:class:`~dreamsampler.engine.family_base.ModelFamily`) says what differs between
diffusers audio families, and nothing else. The five: MusicLDM and AudioLDM
(:mod:`~dreamsampler.engine.audioldm`), AudioLDM 2 (:mod:`~dreamsampler.engine.audioldm2`),
Stable Audio Open 1.0 and Stable Audio 3 (:mod:`~dreamsampler.engine.stable_audio`). This module
imports them; they import only :mod:`~dreamsampler.engine.family_base` (no import cycle).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from dreamsampler.engine.audioldm import (
    AudioLDMFamily,
    ClapLDMFamily,
    LogMelFrontEnd,
    MusicLDMFamily,
)
from dreamsampler.engine.audioldm2 import AudioLDM2Family
from dreamsampler.engine.family_base import (
    FLOAT32,
    ModelFamily,
    ModelLoadError,
    SilentInputError,
    resolve_device,
)
from dreamsampler.engine.stable_audio import StableAudio3Family, StableAudioOpenFamily
from dreamsampler.engine.tiny import TINY_NAMES, build_tiny_components

__all__ = [
    "FAMILIES", "AudioLDM2Family", "AudioLDMFamily", "ClapLDMFamily", "LogMelFrontEnd",
    "ModelFamily", "ModelLoadError", "MusicLDMFamily", "SilentInputError", "StableAudio3Family",
    "StableAudioOpenFamily", "families", "family_names", "load_model", "resolve_device",
]

FAMILIES: dict[str, type[ModelFamily]] = {
    cls.pipeline_class: cls
    for cls in (MusicLDMFamily, AudioLDMFamily, AudioLDM2Family, StableAudioOpenFamily,
                StableAudio3Family)
}
"""Every family by its diffusers pipeline class name (``model_index.json``'s ``_class_name``)."""


def families() -> dict[str, type[ModelFamily]]:
    """:data:`FAMILIES` (a copy)."""
    return dict(FAMILIES)


def family_names() -> tuple[str, ...]:
    """The families' short names, as ``/version`` and generation records report them (the
    same as :data:`dreamsampler.engine.catalog.FAMILY_NAMES`)."""
    return tuple(cls.name for cls in FAMILIES.values())


def _import_class(library: str, class_name: str) -> Any:
    try:
        module = importlib.import_module(library)
    except ModuleNotFoundError:
        # model_index.json names pipeline-local classes by their pipeline folder
        # ("stable_audio", "StableAudioProjectionModel"), as diffusers resolves them
        module = importlib.import_module(f"diffusers.pipelines.{library}")
    return getattr(module, class_name)


def _unreadable_index(model_id: str, exc: Exception) -> str:
    """Why ``model_index.json`` could not be read, in a new user's words, with the ways out."""
    from huggingface_hub import constants

    if Path(model_id).expanduser().is_dir():
        return f"{model_id}: cannot read model_index.json ({exc})"
    why = ("offline mode is on (HF_HUB_OFFLINE is set) and the model is not in the Hugging Face "
           "cache" if constants.HF_HUB_OFFLINE else f"the download from {constants.ENDPOINT} "
           "failed, or there is no such folder or repository")
    return (f"{model_id}: cannot read model_index.json: {why} ({exc}); use --model tiny (random "
            "weights, offline) or --model /path/to/folder (a local diffusers folder)")


def load_model(model_id: str, device: str = "auto", dtype: str = "float32",
               compile: bool = False) -> ModelFamily:
    """Load a model by Hugging Face repo id, local diffusers folder, tiny fixture name, or
    ``mini`` (the trained mini-world model in the package, :mod:`dreamsampler.mini`).

    ``dtype`` is the denoiser's (the rest stays float32: :class:`ModelFamily`); ``compile``
    compiles the denoiser (:meth:`ModelFamily.compile`).

    The family comes from ``model_index.json``'s ``_class_name``; each component loads with its
    class's ``from_pretrained(model_id, subfolder=key)`` (the hub cache is used when offline).

    Raises:
        ModelLoadError: unknown family, missing component, or the source cannot be read.
    """
    torch_device = resolve_device(device)
    torch_dtype = getattr(torch, dtype)
    if model_id == "mini":  # the trained mini-world model shipped in the package
        from dreamsampler.mini import MINI_DIR

        model_id = str(MINI_DIR)
    if model_id in TINY_NAMES:
        family_name, components = build_tiny_components(model_id)
        family = next(f for f in families().values() if f.name == family_name)
        return _compiled(family(model_id, components, torch_device, torch_dtype), compile)

    from diffusers import DiffusionPipeline

    try:
        index = DiffusionPipeline.load_config(model_id)
    except Exception as exc:
        raise ModelLoadError(_unreadable_index(model_id, exc)) from None
    class_name = index.get("_class_name", "")
    family = families().get(class_name)
    if family is None:
        known = ", ".join(sorted(families()))
        raise ModelLoadError(
            f"{model_id}: unsupported pipeline {class_name!r} (supported: {known})"
        )
    components: dict[str, Any] = {}
    for key in family.component_keys:
        entry = index.get(key)
        if not entry or entry[0] is None:
            raise ModelLoadError(f"{model_id}: model_index.json has no component {key!r}")
        try:
            cls = _import_class(entry[0], entry[1])
        except (ImportError, AttributeError) as exc:
            raise ModelLoadError(f"{model_id}: unknown class {entry[0]}.{entry[1]} for {key!r} "
                                 f"({exc}); is diffusers/transformers too old?") from None
        if key == family.denoiser_key and family.denoiser_class is not None:
            cls = family.denoiser_class
        kwargs: dict[str, Any] = {"subfolder": key}
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
            # half precision for the denoiser only (see ModelFamily)
            kwargs["torch_dtype"] = torch_dtype if key == family.denoiser_key else FLOAT32
        try:
            source = str(Path(model_id)) if Path(model_id).is_dir() else model_id
            components[key] = cls.from_pretrained(source, **kwargs)
        except Exception as exc:
            raise ModelLoadError(f"{model_id}: cannot load {key} ({exc})") from None
    return _compiled(family(model_id, components, torch_device, torch_dtype), compile)


def _compiled(model: ModelFamily, compile: bool) -> ModelFamily:
    if compile:
        model.compile()
    return model
