"""Personalized concepts: the on-disk format, its validation, and hot-loading into a model.

A concept is a folder ``<concepts_dir>/<name>/`` holding ``concept.yaml`` (:class:`ConceptMeta`)
and its weights, in safetensors only:

============  ====================================  ==============================================
method        weights                               what loading does
============  ====================================  ==============================================
``ti``        ``learned_embeds.safetensors``         adds the placeholder token(s) to the tokenizer
              (``{placeholder: (num_vectors, d)}``)  and their rows to the text encoder's embedding
                                                     (each text tower: see :func:`ti_tensor_name`)
``lora``      ``pytorch_lora_weights.safetensors``   a peft adapter on the UNet, off unless a
                                                     request names the concept (scale per request)
``dreambooth``  ``unet/`` (diffusers folder)         a second UNet, swapped in for the requests
                                                     that name the concept
============  ====================================  ==============================================

Textual inversion: Gal et al. 2022 (arXiv 2208.01618); DreamBooth: Ruiz et al. 2022
(arXiv 2208.12242); both for audio as in DreamSound (Plitsis et al. 2023, arXiv 2309.11140).
LoRA: Hu et al. 2021 (arXiv 2106.09685). For AudioLDM/MusicLDM the text reaches the UNet only
through ``class_labels``, so LoRA targets ``class_embedding`` and the ResNets' ``time_emb_proj``,
and for AudioLDM 2 the cross-attention; the attention projections of both are targets too
(``DEFAULT_LORA_TARGETS`` in the trainer). The denoiser is the family's ``denoiser_key``
component: the UNet, or the Stable Audio DiT (whose LoRA targets its attention projections).
``concept.yaml`` records the family and a concept of another family is refused.

A concept records a fingerprint of the base weights it was trained on (:func:`fingerprint`) and
refuses to load on another base model. Pickle files (``.bin``, ``.pt``, ``.ckpt``…) are refused
anywhere in a concept folder: loading them can run code.

Memory: a loaded DreamBooth concept holds a full UNet (185 M parameters for MusicLDM, 740 MB in
float32, 370 MB in float16) on the model's device; switching between concepts per request is a
reference swap (no copy). TI costs ``num_vectors × d`` floats; LoRA ``r × (d_in + d_out)`` per
targeted layer (≈ 1–3 MB at rank 4 on the full UNet).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from safetensors import safe_open

from dreamsampler import __version__
from dreamsampler.engine.families import ModelFamily
from dreamsampler.fsutil import atomic_write_text

log = logging.getLogger(__name__)

CONCEPT_FILE = "concept.yaml"
TI_FILE = "learned_embeds.safetensors"
LORA_FILE = "pytorch_lora_weights.safetensors"
DREAMBOOTH_DIR = "unet"
CHECKPOINT_DIR = "checkpoints"
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib"})
METHODS = ("ti", "dreambooth", "lora")
Method = Literal["ti", "dreambooth", "lora"]
FORMAT_VERSION = 1

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ConceptError(ValueError):
    """A concept cannot be saved, read or loaded.

    Attributes:
        path: the file, folder or value the refusal is about.
        reason: what is wrong, also part of ``str(error)``.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ConceptNotLoadedError(ConceptError):
    """A request names a concept that is not loaded in the engine."""


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe concept (folder) name.

    Allowed: 1–64 characters ``A-Z a-z 0-9 _ -``, starting with a letter or digit.

    Raises:
        ConceptError: path characters (``/``, ``\\``, ``..``), spaces, or an empty name.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConceptError(
            repr(name),
            "invalid concept name: use 1-64 letters, digits, '_' or '-' (no path characters)",
        )
    return name


def default_placeholder(name: str) -> str:
    """The placeholder token of a concept named ``name``: ``<name>``."""
    return f"<{name}>"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(model: ModelFamily) -> str:
    """Fingerprint of a model's base weights: sha256 over the text encoders' and the denoiser's
    (UNet's or DiT's) tensors.

    For each module (the text encoder of every text tower: ``text_encoder`` and, for AudioLDM 2,
    ``text_encoder_2``; then ``unet``) and each state-dict entry in sorted key
    order, the key, shape and the tensor's bytes **cast to float16** are hashed, so a model loaded
    in float32 or float16 has the same fingerprint (bfloat16 loses bits and differs). Must be
    computed before any concept changes the model (the :class:`ConceptManager` and the trainer
    do). Cost: one pass over the weights (≈ 1 s for MusicLDM's 185 M UNet + CLAP on a CPU).

    Returns:
        64 hex digits.
    """
    digest = hashlib.sha256()
    for key in [*(encoder for _, encoder in model.text_towers), model.denoiser_key]:
        module: torch.nn.Module = model.components[key]
        state = module.state_dict()
        for name in sorted(state):
            tensor = state[name].detach()
            digest.update(f"{key}.{name}:{tuple(tensor.shape)}".encode())
            if tensor.is_floating_point():
                tensor = tensor.to(torch.float16)
            data = tensor.cpu().contiguous().reshape(-1).view(torch.uint8)
            digest.update(data.numpy().tobytes())
    return digest.hexdigest()


# -- metadata --------------------------------------------------------------------------------------


class ClipRecord(BaseModel):
    """One training clip: where it was and what it held."""

    model_config = ConfigDict(extra="forbid")

    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    caption: str | None = None  # the clip's own prompt template, when trained with captions


class ConceptMeta(BaseModel):
    """``concept.yaml``: what a concept is, what it was trained on and how.

    Attributes:
        name: the concept (and folder) name.
        method: ``ti``, ``dreambooth`` or ``lora``.
        placeholder_token: the word that names the concept in prompts (default ``<name>``).
            For TI it is added to the tokenizer; for DreamBooth/LoRA it is plain prompt text.
        initializer_token: TI start embedding: ``mean`` (of all rows) or a vocabulary token.
        num_vectors: TI embedding rows; more than one expands the placeholder to
            ``<name>_0 <name>_1 …`` in prompts.
        class_word: DreamBooth/LoRA class noun ("guitar"), prompt "a recording of a <name> guitar".
        base_model: model id it was trained on (informative).
        family: the model family it was trained on (``musicldm``, ``audioldm``, ``audioldm2``,
            ``stable-audio``, ``sa3``; checked on load; ``None`` in concepts written before it
            was recorded).
        base_fingerprint: :func:`fingerprint` of that model (checked on load).
        training: the training settings (steps, lr, seed, …).
        clips: the training clips with their sha256.
        created: ISO 8601 UTC time.
        dreamsampler_version: the version that trained it.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    method: Method
    placeholder_token: str = Field(min_length=1)
    initializer_token: str | None = None
    num_vectors: int = Field(1, ge=1, le=64)
    class_word: str | None = None
    base_model: str
    family: str | None = None
    base_fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    training: dict[str, Any] = Field(default_factory=dict)
    clips: list[ClipRecord] = Field(default_factory=list)
    created: str = Field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat())
    dreamsampler_version: str = __version__
    format_version: int = FORMAT_VERSION

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        try:
            return check_name(value)
        except ConceptError as exc:
            raise ValueError(exc.reason) from None

    @field_validator("placeholder_token")
    @classmethod
    def _token_ok(cls, value: str) -> str:
        if any(ch.isspace() for ch in value):
            raise ValueError(f"placeholder token {value!r} must not contain whitespace")
        return value

    @property
    def tokens(self) -> list[str]:
        """The vocabulary tokens a TI concept adds: the placeholder, or ``<p>_0 … <p>_{n-1}``."""
        if self.num_vectors == 1:
            return [self.placeholder_token]
        return [f"{self.placeholder_token}_{i}" for i in range(self.num_vectors)]

    @property
    def weights_path(self) -> str:
        """The weight file or folder of this method, relative to the concept folder."""
        return {"ti": TI_FILE, "lora": LORA_FILE, "dreambooth": DREAMBOOTH_DIR}[self.method]


@dataclass(frozen=True)
class ConceptInfo:
    """A concept as the engine reports it (``/concept/list``, ``/concept/available``).

    Attributes:
        family: the model family recorded at training (``concept.yaml``'s ``family``), else the
            base model id (concepts written before the family was recorded).
        loaded: it is loaded in the engine.
        already_loaded: a load found it loaded already and changed nothing.
    """

    name: str
    method: str
    placeholder_token: str
    base_model: str
    loaded: bool = False
    family: str = ""
    already_loaded: bool = False

    @classmethod
    def from_meta(cls, meta: ConceptMeta, loaded: bool = False) -> ConceptInfo:
        family = str(meta.family or meta.training.get("family") or meta.base_model)
        return cls(meta.name, meta.method, meta.placeholder_token, meta.base_model, loaded,
                   family)


# -- files -----------------------------------------------------------------------------------------


def concept_dir(concepts_dir: Path, name: str) -> Path:
    """``<concepts_dir>/<name>`` after checking the name (:func:`check_name`)."""
    return Path(concepts_dir) / check_name(name)


def write_meta(folder: Path, meta: ConceptMeta) -> None:
    """Write ``concept.yaml`` atomically (written last by the trainer: it marks completion)."""
    text = yaml.safe_dump(meta.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    atomic_write_text(folder / CONCEPT_FILE, text)


def refuse_pickles(folder: Path) -> None:
    """Refuse a concept folder holding any pickle-format file.

    Raises:
        ConceptError: names the first ``.bin``/``.pt``/``.pth``/``.ckpt``/``.pkl`` file found.
    """
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
            raise ConceptError(
                path, "not a safetensors file: pickle formats can run code when loaded; "
                "convert the weights to .safetensors"
            )


def refuse_outside_links(folder: Path) -> None:
    """Refuse a concept folder holding a symbolic link that leads outside it.

    Weights reached through such a link could be any file the server can read.

    Raises:
        ConceptError: names the first link and where it points.
    """
    folder = Path(folder)
    if folder.is_symlink() and not folder.resolve().is_relative_to(folder.parent.resolve()):
        raise ConceptError(folder, f"the concept folder is a symbolic link to "
                           f"{folder.resolve()}, outside the concepts folder: move or copy it "
                           "into the concepts folder instead")
    root = folder.resolve()
    for dirpath, dirnames, filenames in os.walk(folder):  # does not follow links
        for name in sorted([*dirnames, *filenames]):
            path = Path(dirpath) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise ConceptError(path, f"a symbolic link to {path.resolve()}, outside the "
                                   "concept folder: copy the file into the folder instead")


def check_finite(path: Path | str, tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Refuse weights holding NaN or infinite values (they would make every clip non-finite).

    Raises:
        ConceptError: names the file and the first tensor with non-finite values.
    """
    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ConceptError(path, f"tensor {name!r} holds {bad} NaN or infinite value(s): "
                               "the concept is corrupt (retrain it)")


def read_concept(folder: Path) -> ConceptMeta:
    """Read and validate a concept folder (no weights are loaded).

    Raises:
        ConceptError: missing or invalid ``concept.yaml`` (with every bad key), a name that does
            not match the folder, a pickle file, a symbolic link leading outside the folder, a
            missing or non-safetensors weight file.
    """
    folder = Path(folder)
    check_name(folder.name)
    meta_path = folder / CONCEPT_FILE
    if not folder.is_dir():
        raise ConceptError(folder, "no such concept folder")
    if not meta_path.is_file():
        unfinished = (folder / CHECKPOINT_DIR).is_dir()
        partial = " (training did not finish: resume it)" if unfinished else ""
        raise ConceptError(meta_path, f"missing{partial}")
    try:
        data = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConceptError(meta_path, f"cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise ConceptError(meta_path, "expected a mapping")
    try:
        meta = ConceptMeta.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConceptError(meta_path, f"invalid: {errors}") from None
    if meta.name != folder.name:
        raise ConceptError(meta_path,
                           f"name {meta.name!r} does not match its folder {folder.name!r}")
    refuse_pickles(folder)
    refuse_outside_links(folder)
    weights = folder / meta.weights_path
    if meta.method == "dreambooth":
        files = sorted(weights.glob("*.safetensors")) if weights.is_dir() else []
        if not files or not (weights / "config.json").is_file():
            raise ConceptError(weights, "missing DreamBooth UNet (config.json + .safetensors)")
    elif not weights.is_file():
        raise ConceptError(weights, "missing weight file")
    return meta


def list_concept_dirs(concepts_dir: Path) -> list[Path]:
    """Sub-folders of ``concepts_dir`` with a valid name, sorted (empty if it does not exist)."""
    root = Path(concepts_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))


def scan_concepts(concepts_dir: Path) -> tuple[list[ConceptMeta], list[ConceptError]]:
    """Every concept under ``concepts_dir``: the valid ones and the refusals of the others."""
    good: list[ConceptMeta] = []
    bad: list[ConceptError] = []
    for folder in list_concept_dirs(concepts_dir):
        try:
            good.append(read_concept(folder))
        except ConceptError as exc:
            bad.append(exc)
    return good, bad


# -- text encoder rows -----------------------------------------------------------------------------


def ti_tensor_name(placeholder: str, tower: int, text_encoder_key: str) -> str:
    """Name of a TI concept's rows for one text tower in ``learned_embeds.safetensors``.

    The first tower's rows are named by the placeholder alone (the single-tower format of
    AudioLDM/MusicLDM); further towers (AudioLDM 2's Flan-T5) by
    ``<text_encoder_key>:<placeholder>``, e.g. ``text_encoder_2:<my-guitar>``.
    """
    return placeholder if tower == 0 else f"{text_encoder_key}:{placeholder}"


def token_embedding(text_encoder: torch.nn.Module) -> torch.nn.Embedding:
    """The token embedding table ``(vocab, d)`` of a CLAP (or other HF) text encoder."""
    inner = getattr(text_encoder, "text_model", text_encoder)
    return inner.get_input_embeddings()


def resize_token_embedding(text_encoder: torch.nn.Module, rows: int) -> torch.nn.Embedding:
    """Grow or shrink the token embedding to ``rows``, keeping the common rows bit-identical.

    New rows are zero (callers write them); the global RNG is not touched (unlike
    ``resize_token_embeddings``, which samples new rows). The text config's ``vocab_size``
    follows.
    """
    inner = getattr(text_encoder, "text_model", text_encoder)
    old = inner.get_input_embeddings()
    if old.num_embeddings == rows:
        return old
    weight = torch.zeros(rows, old.embedding_dim, dtype=old.weight.dtype, device=old.weight.device)
    keep = min(rows, old.num_embeddings)
    weight[:keep] = old.weight.detach()[:keep]
    new = torch.nn.Embedding(rows, old.embedding_dim, padding_idx=old.padding_idx, _weight=weight)
    new.weight.requires_grad_(old.weight.requires_grad)
    inner.set_input_embeddings(new)
    inner.config.vocab_size = rows
    return new


def _plain_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A model config as JSON would hold it (tuples → lists), without private keys."""
    return json.loads(json.dumps({k: v for k, v in config.items() if not k.startswith("_")},
                                 default=str))


# -- the engine side -------------------------------------------------------------------------------


@dataclass
class _Loaded:
    meta: ConceptMeta
    embeds: list[torch.Tensor] | None = None  # TI: (num_vectors, d) per text tower
    unet: torch.nn.Module | None = None  # DreamBooth
    extra: dict[str, Any] = field(default_factory=dict)


def require_manager(manager: ConceptManager | None) -> ConceptManager:
    """``manager``, or the error every engine gives when no concepts folder is configured.

    Raises:
        ConceptError: ``manager`` is None.
    """
    if manager is None:
        raise ConceptError("concepts_dir", "no concepts folder is configured")
    return manager


class ConceptManager:
    """Loads, unloads and activates concepts on one model; the only code that changes its weights.

    Attach one per model (the constructor sets ``model.concepts``); :func:`sample` then activates
    the request's concept through :meth:`activate`. Not thread-safe: call it from the engine's
    worker thread (between jobs, see ``LocalEngine``), never during a generation.

    Args:
        model: the loaded family adapter.
        concepts_dir: folder of concept folders.
    """

    def __init__(self, model: ModelFamily, concepts_dir: Path) -> None:
        self.model = model
        self.concepts_dir = Path(concepts_dir)
        self._loaded: dict[str, _Loaded] = {}
        self._base_tokenizers = [copy.deepcopy(model.components[t]) for t, _ in model.text_towers]
        self._base_vocabs = [token_embedding(model.components[e]).num_embeddings
                             for _, e in model.text_towers]
        # rows past the tokenizer's vocabulary (t5-base and Flan-T5: 32,100 tokens, 32,128 rows,
        # never trained): TI tokens take them first; their base values are restored on unload
        self._base_tokens = [min(len(tok), vocab)
                             for tok, vocab in zip(self._base_tokenizers, self._base_vocabs,
                                                   strict=True)]
        self._spare_rows = [
            token_embedding(model.components[e]).weight.detach()[start:].clone()
            for start, (_, e) in zip(self._base_tokens, model.text_towers, strict=True)
        ]
        self._fingerprint: str | None = None
        model.concepts = self

    @property
    def base_fingerprint(self) -> str:
        """:func:`fingerprint` of the model as it was before any concept (computed once)."""
        if self._fingerprint is None:
            if self._loaded:
                raise RuntimeError("fingerprint must be computed before concepts change the model")
            self._fingerprint = fingerprint(self.model)
        return self._fingerprint

    def loaded(self) -> list[ConceptInfo]:
        """The loaded concepts, in load order."""
        return [ConceptInfo.from_meta(e.meta, loaded=True) for e in self._loaded.values()]

    def available(self) -> list[ConceptInfo]:
        """Valid concepts on disk (loaded or not); broken ones are logged and skipped."""
        metas, errors = scan_concepts(self.concepts_dir)
        for err in errors:
            log.warning("concept skipped: %s", err)
        return [ConceptInfo.from_meta(m, loaded=m.name in self._loaded) for m in metas]

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def ensure_loaded(self, name: str) -> ConceptInfo:
        """:meth:`load`, idempotent as every engine's ``load_concept``: a concept that is
        loaded already is returned unchanged with ``already_loaded=True``.

        Raises:
            ConceptError: as :meth:`load`.
        """
        if name in self._loaded:
            info = ConceptInfo.from_meta(self._loaded[name].meta, loaded=True)
            return dataclasses.replace(info, already_loaded=True)
        return self.load(name)

    # -- load / unload --------------------------------------------------------------------------

    def load(self, name: str) -> ConceptInfo:
        """Load ``<concepts_dir>/<name>`` into the model.

        All checks happen before the model changes; a refused concept leaves every loaded one as
        it was.

        Raises:
            ConceptError: invalid name or folder (see :func:`read_concept`), already loaded,
                trained for another base model, a TI token already in the vocabulary, weights of
                the wrong shape or with NaN/infinite values (:func:`check_finite`).
        """
        folder = concept_dir(self.concepts_dir, name)
        if name in self._loaded:
            raise ConceptError(f"concept {name!r}", "already loaded (unload it first to reload)")
        meta = read_concept(folder)
        self.check_base(meta, folder / CONCEPT_FILE)
        if meta.method == "ti":
            entry = self._prepare_ti(meta, folder)
            self._loaded[name] = entry
            try:
                self._rebuild_vocabulary()
            except BaseException:
                del self._loaded[name]
                self._rebuild_vocabulary()
                raise
        elif meta.method == "lora":
            entry = self._load_lora(meta, folder)
            self._loaded[name] = entry
        else:
            entry = self._load_dreambooth(meta, folder)
            self._loaded[name] = entry
        log.info("concept %s (%s) loaded", name, meta.method)
        return ConceptInfo.from_meta(meta, loaded=True)

    def unload(self, name: str) -> None:
        """Remove a loaded concept; the model returns to its state without it.

        TI: the tokenizer and embedding table are rebuilt from the base ones plus the other TI
        concepts (original vocabulary size and rows when none is left). LoRA: the adapter is
        deleted. DreamBooth: its UNet is released.

        Raises:
            ConceptNotLoadedError: ``name`` is not loaded.
        """
        entry = self._loaded.get(name)
        if entry is None:
            raise ConceptNotLoadedError(f"concept {name!r}", f"not loaded{self._loaded_hint()}")
        del self._loaded[name]
        if entry.meta.method == "ti":
            self._rebuild_vocabulary()
        elif entry.meta.method == "lora":
            self.model.components[self.model.denoiser_key].delete_adapters([name])
        self.model.clear_prompt_cache()
        log.info("concept %s unloaded", name)

    def check_base(self, meta: ConceptMeta, source: Path | str) -> None:
        """Refuse a concept trained on other base weights.

        Raises:
            ConceptError: the fingerprints differ; the message names both models.
        """
        if meta.family is not None and meta.family != self.model.name:
            raise ConceptError(source, f"concept {meta.name!r} is for the {meta.family} family, "
                               f"but the loaded model {self.model.model_id!r} is "
                               f"{self.model.name} (another model family)")
        mine = self.base_fingerprint
        if meta.base_fingerprint != mine:
            raise ConceptError(
                source,
                f"concept {meta.name!r} was trained for base model {meta.base_model!r} "
                f"(fingerprint {meta.base_fingerprint[:16]}…), but the loaded model is "
                f"{self.model.model_id!r} (fingerprint {mine[:16]}…)",
            )

    def _loaded_hint(self) -> str:
        names = ", ".join(self._loaded)
        return f" (loaded: {names})" if names else " (none loaded)"

    def _prepare_ti(self, meta: ConceptMeta, folder: Path) -> _Loaded:
        path = folder / TI_FILE
        for tokenizer_key, _ in self.model.text_towers:
            vocab = self.model.components[tokenizer_key].get_vocab()
            for token in meta.tokens:
                if token in vocab:
                    raise ConceptError(
                        folder / CONCEPT_FILE,
                        f"placeholder token {token!r} is already in the vocabulary of "
                        f"{tokenizer_key} (a word of the model or another loaded concept); "
                        "retrain with another token",
                    )
        expansions = self.model.token_expansions
        if meta.placeholder_token in expansions:
            raise ConceptError(
                folder / CONCEPT_FILE,
                f"placeholder {meta.placeholder_token!r} is used by a loaded concept",
            )
        names = [ti_tensor_name(meta.placeholder_token, i, encoder_key)
                 for i, (_, encoder_key) in enumerate(self.model.text_towers)]
        try:
            with safe_open(str(path), "pt") as fh:
                keys = set(fh.keys())
                for tensor_name in names:
                    if tensor_name not in keys:
                        raise ConceptError(path, f"has no tensor named {tensor_name!r}")
                rows = [fh.get_tensor(n) for n in names]
        except ConceptError:
            raise
        except Exception as exc:
            raise ConceptError(path, f"not a readable safetensors file ({exc})") from None
        embeds: list[torch.Tensor] = []
        for (_, encoder_key), tensor in zip(self.model.text_towers, rows, strict=True):
            dim = token_embedding(self.model.components[encoder_key]).embedding_dim
            if tensor.ndim == 1:
                tensor = tensor[None]
            if tuple(tensor.shape) != (meta.num_vectors, dim):
                raise ConceptError(path, f"embedding shape {tuple(tensor.shape)} does not match "
                                   f"(num_vectors={meta.num_vectors}, d={dim}) of {encoder_key}")
            check_finite(path, [(names[len(embeds)], tensor)])
            embeds.append(tensor)
        return _Loaded(meta, embeds=embeds)

    def _rebuild_vocabulary(self) -> None:
        """Tokenizers and embeddings = base + every loaded TI concept, in load order (each text
        tower of the family)."""
        ti = [e for e in self._loaded.values() if e.meta.method == "ti"]
        tokens = [t for e in ti for t in e.meta.tokens]
        for tower, (tokenizer_key, encoder_key) in enumerate(self.model.text_towers):
            tokenizer = copy.deepcopy(self._base_tokenizers[tower])
            if tokens:
                tokenizer.add_tokens(tokens)
            start = self._base_tokens[tower]
            table = resize_token_embedding(self.model.components[encoder_key],
                                           max(self._base_vocabs[tower], start + len(tokens)))
            with torch.no_grad():
                spare = self._spare_rows[tower][: table.num_embeddings - start]
                table.weight[start : start + spare.shape[0]] = spare
                for e in ti:
                    assert e.embeds is not None
                    ids = tokenizer.convert_tokens_to_ids(e.meta.tokens)
                    table.weight[ids] = e.embeds[tower].to(table.weight.device, table.weight.dtype)
            self.model.components[tokenizer_key] = tokenizer
        self.model.token_expansions = {
            e.meta.placeholder_token: " ".join(e.meta.tokens)
            for e in ti if e.meta.num_vectors > 1
        }
        self.model.clear_prompt_cache()

    def _load_lora(self, meta: ConceptMeta, folder: Path) -> _Loaded:
        unet = self.model.components[self.model.denoiser_key]
        path = folder / LORA_FILE
        try:
            with safe_open(str(path), "pt") as fh:
                check_finite(path, ((key, fh.get_tensor(key)) for key in fh.keys()))  # noqa: SIM118
        except ConceptError:
            raise
        except Exception as exc:
            raise ConceptError(path, f"not a readable safetensors file ({exc})") from None
        try:
            unet.load_lora_adapter(str(folder), weight_name=LORA_FILE, prefix=None,
                                   adapter_name=meta.name)
        except Exception as exc:
            with contextlib.suppress(Exception):
                unet.delete_adapters([meta.name])
            raise ConceptError(folder / LORA_FILE, f"cannot load LoRA adapter ({exc})") from None
        unet.disable_adapters()  # only the requests that name it use it
        return _Loaded(meta)

    def _load_dreambooth(self, meta: ConceptMeta, folder: Path) -> _Loaded:
        base = self.model.components[self.model.denoiser_key]
        path = folder / DREAMBOOTH_DIR
        try:
            unet = type(base).from_pretrained(str(path), torch_dtype=self.model.dtype,
                                              use_safetensors=True)
        except Exception as exc:
            raise ConceptError(path, f"cannot load DreamBooth UNet ({exc})") from None
        ours = _plain_config(base.config)
        theirs = _plain_config(unet.config)
        if ours != theirs:
            diff = sorted(k for k in ours if ours.get(k) != theirs.get(k))
            raise ConceptError(path / "config.json",
                               f"UNet architecture differs from the base model's ({diff})")
        check_finite(path, unet.named_parameters())
        unet.to(self.model.device).eval().requires_grad_(False)
        return _Loaded(meta, unet=unet)

    # -- per request ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def activate(
        self, name: str | None, lora_scale: float = 1.0, loras: Sequence[tuple[str, float]] = ()
    ) -> Iterator[None]:
        """Make ``name`` (and the LoRA blend ``loras``) active for one generation, then restore
        the base state.

        ``None``: the base model (LoRA adapters off, base denoiser). LoRA: the adapter at
        ``lora_scale``. DreamBooth: its denoiser in place of the base one. TI: nothing to switch
        (its token is always usable in prompts). ``loras``: further LoRA concepts with their
        weights, active together (peft sums the weighted adapter deltas: ``W + Σ wᵢ·BᵢAᵢ·αᵢ/rᵢ``),
        with ``name`` (when it is a LoRA) at ``lora_scale``.

        Raises:
            ConceptNotLoadedError: a named concept is not loaded.
            ConceptError: a blend names a concept that is not a LoRA, or ``name`` is a
                DreamBooth concept (its own denoiser has no adapters).
        """
        if name is None and not loras:
            yield
            return
        entry = self._entry(name) if name is not None else None
        blend = [(n, float(w)) for n, w in loras]
        for other, _ in blend:
            if self._entry(other).meta.method != "lora":
                raise ConceptError(f"concept {other!r}", "only LoRA concepts can be blended")
        if entry is not None and entry.meta.method == "lora":
            assert name is not None
            blend.insert(0, (name, float(lora_scale)))
        components = self.model.components
        key = self.model.denoiser_key
        if entry is not None and entry.meta.method == "dreambooth":
            if blend:
                raise ConceptError(f"concept {name!r}",
                                   "a DreamBooth concept cannot be blended with LoRAs")
            base = components[key]
            components[key] = entry.unet
            try:
                yield
            finally:
                components[key] = base
        elif blend:
            denoiser = components[key]
            denoiser.set_adapters([n for n, _ in blend], [w for _, w in blend])
            denoiser.enable_adapters()
            try:
                yield
            finally:
                denoiser.disable_adapters()
        else:
            yield

    def _entry(self, name: str) -> _Loaded:
        entry = self._loaded.get(name)
        if entry is None:
            raise ConceptNotLoadedError(
                f"concept {name!r}",
                f"not loaded{self._loaded_hint()}; load it with /concept/load {name}",
            )
        return entry


def activate(
    model: ModelFamily, name: str | None, lora_scale: float = 1.0,
    loras: Sequence[tuple[str, float]] = (),
) -> Any:
    """Context manager activating ``name`` and the LoRA blend ``loras`` on ``model`` (see
    :meth:`ConceptManager.activate`).

    Raises:
        ConceptNotLoadedError: a concept is named but the model has no manager or does not
            have it loaded.
    """
    manager: ConceptManager | None = model.concepts
    if manager is None:
        if name is None and not loras:
            return contextlib.nullcontext()
        missing = name if name is not None else loras[0][0]
        raise ConceptNotLoadedError(f"concept {missing!r}",
                                    "not loaded (this model has no concepts)")
    return manager.activate(name, lora_scale, loras)


def clip_records(paths: Mapping[str, Path] | list[Path],
                 captions: Sequence[str] | None = None) -> list[ClipRecord]:
    """:class:`ClipRecord` (path + sha256, and the caption when trained with captions) for each
    training clip file."""
    items = list(paths.values() if isinstance(paths, Mapping) else paths)
    texts: Sequence[str | None] = captions if captions is not None else [None] * len(items)
    return [ClipRecord(path=str(Path(p).resolve()), sha256=sha256_file(Path(p)), caption=c)
            for p, c in zip(items, texts, strict=True)]


async def autoload(engine: Any, wanted: str | Sequence[str]) -> list[ConceptInfo]:
    """Load the concepts ``concepts_autoload`` names on ``engine`` (any
    :class:`~dreamsampler.engine.jobs.Engine`): each named one must load; ``"*"`` loads every
    concept on disk and skips (logs) the ones that cannot load.

    Raises:
        ConceptError: a named concept cannot be loaded.
    """
    loaded: list[ConceptInfo] = []
    if wanted == "*":
        for info in await engine.available_concepts():
            try:
                loaded.append(await engine.load_concept(info.name))
            except ConceptError as exc:
                log.warning("concept not autoloaded: %s", exc)
    else:
        for name in wanted:
            loaded.append(await engine.load_concept(name))
    if loaded:
        log.info("concepts loaded: %s", ", ".join(c.name for c in loaded))
    return loaded
