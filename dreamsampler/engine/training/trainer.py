"""One training loop for personalized concepts; the methods differ only in what trains and how
prompts are built.

Loss (Ho et al. 2020, arXiv 2006.11239, Eq. 14; v-prediction: Salimans & Ho 2022,
arXiv 2202.00512, Sec. 4): for a concept clip's VAE latent ``z0`` ``(batch, channels, frames,
bins)``, noise ``ε ~ N(0, I)`` and a timestep ``t ~ U{0, …, T-1}``,
``z_t = scheduler.add_noise(z0, ε, t)`` and ``L = ‖f(z_t, t, c) − y‖²`` (mean), with ``y = ε``
(``prediction_type="epsilon"``), ``y = scheduler.get_velocity(z0, ε, t)`` (``"v_prediction"``) or
``y = z0`` (``"sample"``). Text, latents and the denoiser go through the model family's own
methods (:meth:`~dreamsampler.engine.families.ModelFamily.encode_text`, ``audio_to_latents``,
``denoise``); clip latents are encoded once and cached.

Methods (:class:`Strategy`):

* ``ti`` — textual inversion (Gal et al. 2022; DreamSound, Plitsis et al. 2023, arXiv 2309.11140):
  only the placeholder rows of the token embedding train; every other row is restored after each
  step. Prompts from :data:`TI_TEMPLATES`. Defaults: lr 5e-4 × batch × accumulation, 3000 steps,
  batch 1 × accumulation 4, AdamW weight decay 1e-2, initializer "mean" of all rows.
* ``dreambooth`` — the whole UNet trains (Ruiz et al. 2022, arXiv 2208.12242): lr 1e-6, 300 steps,
  gradient clip 1.0, prompt "a recording of a <name> <class>"; optional prior preservation with
  class clips the base model generates through :func:`~dreamsampler.engine.sampler.sample`.
* ``lora`` — peft LoRA (Hu et al. 2021, arXiv 2106.09685) on :data:`DEFAULT_LORA_TARGETS`: the
  UNet's ``class_embedding``, ResNet ``time_emb_proj`` and attention projections ``to_q``,
  ``to_k``, ``to_v``, ``to_out.0``; lr 1e-4, 500 steps, rank 4.

Data augmentation: DreamSound's MIX (another sound at a target SNR, ``mix``) and MusicLDM's
beat-synchronous mixup (Chen et al. 2023, arXiv 2308.01546, Sec. 3.2; ``TrainSettings.mixup``):
clips are grouped by tempo, a clip is mixed with a partner of its group aligned on the first
downbeat, ``λ ~ Beta(5, 5)``, either in audio before the VAE (``bam``) or between VAE latents
(``blm``). Each augmentation is drawn once per cached variant (``mix_variants`` per clip); a clip
with no tempo-compatible partner stays as it is.

Reproducibility: the examples, noise and timesteps of step ``s`` are a pure function of
``(seed, s)``, so a run resumed from a checkpoint continues exactly as the uninterrupted run.
Checkpoints (trainable tensors + AdamW state, safetensors; settings in JSON) are written to a
temporary folder and renamed into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from safetensors.torch import load_file, save_file

from dreamsampler.engine.concepts import (
    CHECKPOINT_DIR,
    CONCEPT_FILE,
    DREAMBOOTH_DIR,
    LORA_FILE,
    TI_FILE,
    ConceptError,
    ConceptMeta,
    Method,
    clip_records,
    concept_dir,
    default_placeholder,
    fingerprint,
    resize_token_embedding,
    ti_tensor_name,
    token_embedding,
    write_meta,
)
from dreamsampler.engine.families import ModelFamily
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from dreamsampler.engine.training.augment import (
    BeatSyncMixup,
    MixAugmenter,
    beat_aligned_latent_mixup,
)
from dreamsampler.engine.training.clips import TrainingClip
from dreamsampler.engine.training.dataset import (
    DREAMBOOTH_TEMPLATE,
    TI_TEMPLATES,
    ConceptDataset,
    format_prompt,
)
from dreamsampler.fsutil import atomic_write_path, atomic_write_text

log = logging.getLogger(__name__)

#: LoRA target modules (the README lists the same): AudioLDM/MusicLDM's text enters only through
#: ``class_embedding`` (concatenated to the time embedding, then each ResNet's ``time_emb_proj``);
#: AudioLDM 2's through the cross-attention ``to_k``/``to_v``; the attention projections also
#: give the adapter room for the sound itself (as diffusers' LoRA scripts target them).
DEFAULT_LORA_TARGETS: tuple[str, ...] = (
    "class_embedding", "time_emb_proj", "to_q", "to_k", "to_v", "to_out.0",
)

#: Per-method defaults (DreamSound for TI and DreamBooth; diffusers' LoRA scripts for LoRA).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "ti": {"steps": 3000, "lr": 5e-4, "grad_accum": 4, "scale_lr": True, "max_grad_norm": None},
    "dreambooth": {"steps": 300, "lr": 1e-6, "grad_accum": 1, "scale_lr": False,
                   "max_grad_norm": 1.0},
    "lora": {"steps": 500, "lr": 1e-4, "grad_accum": 1, "scale_lr": False, "max_grad_norm": 1.0},
}

StepCallback = Callable[[int, int, float], None]


class TrainingError(RuntimeError):
    """Training cannot start or resume; the message says why."""


@dataclass
class TrainSettings:
    """Everything that shapes a training run (recorded in ``concept.yaml`` and checkpoints).

    ``None`` fields take the method's default from :data:`METHOD_DEFAULTS`.

    Attributes:
        method: ``ti``, ``dreambooth`` or ``lora``.
        name: concept name (folder name; see :func:`~dreamsampler.engine.concepts.check_name`).
        steps: optimizer steps.
        lr: learning rate (before scaling).
        scale_lr: multiply ``lr`` by ``batch_size × grad_accum`` (DreamSound TI).
        batch_size: clips per micro-batch.
        grad_accum: micro-batches per optimizer step.
        seed: seeds examples, noise and timesteps.
        weight_decay: AdamW weight decay (1e-2).
        max_grad_norm: gradient clipping norm, ``None`` for none.
        placeholder_token: default ``<name>``.
        initializer_token: TI start row: ``mean`` (of all rows) or a single vocabulary token.
        num_vectors: TI rows.
        class_word: DreamBooth/LoRA class noun.
        rank, alpha: LoRA rank and alpha (scaling ``alpha / rank``).
        lora_targets: LoRA target module names; the default stands for the family's own
            (``ModelFamily.lora_targets``, e.g. the Stable Audio DiTs' attention projections).
        prior_preservation: DreamBooth prior loss with base-model class clips.
        num_class_clips: class clips to generate for it.
        prior_weight: weight of the prior loss.
        class_steps: sampling steps for the class clips.
        mix_snr: MIX SNR in dB (used when a MIX augmenter is given).
        mix_probability: probability of MIX per cached variant.
        mix_variants: augmented variants per clip (each encoded once).
        mixup: MusicLDM beat-synchronous mixup, ``bam`` (audio) or ``blm`` (latents); ``None``
            for none.
        mixup_probability: probability of mixup per cached variant.
        mixup_tolerance_bpm: tempo tolerance of a mixup group in BPM.
        checkpoint_every: steps between checkpoints (0: only at the end).
        mixed_precision: ``auto`` (bf16/fp16 autocast on CUDA, none on CPU), ``no``, ``fp16``,
            ``bf16``.
    """

    method: Method
    name: str
    steps: int | None = None
    lr: float | None = None
    scale_lr: bool | None = None
    batch_size: int = 1
    grad_accum: int | None = None
    seed: int = 0
    weight_decay: float = 1e-2
    max_grad_norm: float | None = -1.0  # -1: method default
    placeholder_token: str | None = None
    initializer_token: str = "mean"
    num_vectors: int = 1
    class_word: str = "sound"
    rank: int = 4
    alpha: float = 4.0
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    prior_preservation: bool = False
    num_class_clips: int = 4
    prior_weight: float = 1.0
    class_steps: int = 25
    mix_snr: float = 20.0
    mix_probability: float = 0.5
    mix_variants: int = 4
    mixup: Literal["bam", "blm"] | None = None
    mixup_probability: float = 0.5
    mixup_tolerance_bpm: float = 3.0
    checkpoint_every: int = 500
    mixed_precision: str = "auto"

    def resolved(self) -> TrainSettings:
        """A copy with every method default filled in and values checked.

        Raises:
            ValueError: a value out of its domain.
        """
        defaults = METHOD_DEFAULTS[self.method]
        out = dataclasses.replace(self)
        out.steps = defaults["steps"] if self.steps is None else self.steps
        out.lr = defaults["lr"] if self.lr is None else self.lr
        out.grad_accum = defaults["grad_accum"] if self.grad_accum is None else self.grad_accum
        out.scale_lr = defaults["scale_lr"] if self.scale_lr is None else self.scale_lr
        if self.max_grad_norm is not None and self.max_grad_norm < 0:
            out.max_grad_norm = defaults["max_grad_norm"]
        out.placeholder_token = self.placeholder_token or default_placeholder(self.name)
        out.lora_targets = tuple(self.lora_targets)
        for key in ("steps", "batch_size", "grad_accum", "num_vectors", "rank", "mix_variants"):
            if getattr(out, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(out, key)}")
        if not out.lr > 0:
            raise ValueError(f"lr must be > 0, got {out.lr}")
        if self.mixup not in (None, "bam", "blm"):
            raise ValueError(f"mixup must be bam, blm or None, got {self.mixup!r}")
        if not 0.0 <= self.mixup_probability <= 1.0:
            raise ValueError(f"mixup_probability must be in [0, 1], got {self.mixup_probability}")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be auto, no, fp16 or bf16, got "
                             f"{self.mixed_precision!r}")
        return out

    @property
    def effective_lr(self) -> float:
        assert self.lr is not None and self.grad_accum is not None
        return self.lr * (self.batch_size * self.grad_accum if self.scale_lr else 1)

    def to_record(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lora_targets"] = list(self.lora_targets)
        return data


@dataclass
class TrainResult:
    """What a finished run produced."""

    meta: ConceptMeta
    folder: Path
    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0


# -- the loss, shared by training and evaluation ---------------------------------------------------


def noise_scheduler(model: ModelFamily) -> DDPMScheduler | None:
    """The training-time forward process of ``model`` (its scheduler config as DDPM); ``None``
    for a family with its own objective (``training_example``: Stable Audio)."""
    if hasattr(model, "training_example"):
        return None
    return DDPMScheduler.from_config(model.scheduler_config)


def denoising_loss(
    model: ModelFamily,
    scheduler: Any,
    latents: torch.Tensor,
    conditioning: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Mean-squared denoising loss at random timesteps (Ho et al. 2020, Eq. 14), or the family's
    own objective where it has one (``model.training_example(latents, generator)`` →
    ``(noisy, t, target)``: Stable Audio Open's v-objective, Stable Audio 3's rectified flow).

    Args:
        model: the family adapter (its :meth:`denoise` is the network).
        scheduler: a scheduler with ``add_noise`` (and ``get_velocity`` for v-prediction).
        latents: clean scaled latents ``z0`` ``(batch, channels, frames, bins)`` (Stable Audio:
            ``(batch, channels, frames)``; the timing conditioning is the clip's length).
        conditioning: text conditioning (``(batch, dim)``; the family's object for Stable Audio).
        generator: CPU generator for the noise and the timesteps.

    Returns:
        Scalar float32 loss.

    Raises:
        ValueError: unknown ``prediction_type``.
    """
    example = getattr(model, "training_example", None)
    if example is not None:  # the family's own objective (Stable Audio: v or rectified flow)
        noisy, t, target = example(latents, generator)
        prediction = model.denoise(noisy, t, conditioning)
        return F.mse_loss(prediction.float(), target.float())
    batch = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
    noise = noise.to(latents.device, latents.dtype)
    steps = int(scheduler.config.num_train_timesteps)
    t = torch.randint(0, steps, (batch,), generator=generator).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, t)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
    elif kind == "sample":
        target = latents
    else:
        raise ValueError(f"unknown prediction_type {kind!r}")
    prediction = model.denoise(noisy, t, conditioning)
    return F.mse_loss(prediction.float(), target.float())


def evaluate_loss(
    model: ModelFamily, latents: torch.Tensor, prompt: str, seeds: Sequence[int]
) -> float:
    """Mean :func:`denoising_loss` of ``latents`` ``(n, channels, frames, bins)`` under ``prompt``
    over fixed noise draws (one generator per seed): a held-out measure of fit."""
    scheduler = noise_scheduler(model)
    with torch.no_grad():
        cond = model.encode_text([prompt] * latents.shape[0])
        losses = [
            denoising_loss(model, scheduler, latents.to(model.device, model.dtype), cond,
                           torch.Generator("cpu").manual_seed(s)).item()
            for s in seeds
        ]
    return float(np.mean(losses))


# -- methods ---------------------------------------------------------------------------------------


class Strategy:
    """What differs between methods: trainable parameters, prompts, saved weights."""

    def __init__(self, model: ModelFamily, settings: TrainSettings) -> None:
        self.model = model
        self.s = settings

    def prepare(self) -> list[torch.nn.Parameter]:
        """Make the method's parameters trainable (everything else frozen); return them."""
        raise NotImplementedError

    @property
    def text_needs_grad(self) -> bool:
        return False

    @property
    def templates(self) -> tuple[str, ...]:
        return (DREAMBOOTH_TEMPLATE,)

    def prompt(self, template: str) -> str:
        return format_prompt(template, self.s.placeholder_token or "", self.s.class_word)

    def after_step(self) -> None:
        """Called after every optimizer step."""

    def state(self) -> dict[str, torch.Tensor]:
        """Trainable tensors for a checkpoint."""
        raise NotImplementedError

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def save(self, folder: Path) -> None:
        """Write the concept's weights (safetensors) into ``folder``."""
        raise NotImplementedError


class TextualInversion(Strategy):
    """Placeholder rows of the token embedding train; all other rows stay bit-identical.

    The placeholder enters every text tower of the family (:attr:`ModelFamily.text_towers`:
    AudioLDM 2 has CLAP's RoBERTa and Flan-T5), each with its own rows.
    """

    def prepare(self) -> list[torch.nn.Parameter]:
        placeholder = self.s.placeholder_token or ""
        tokens = (
            [placeholder] if self.s.num_vectors == 1
            else [f"{placeholder}_{i}" for i in range(self.s.num_vectors)]
        )
        towers = [(self.model.components[t], self.model.components[e], t)
                  for t, e in self.model.text_towers]
        for tokenizer, _, key in towers:
            vocab = tokenizer.get_vocab()
            clash = [t for t in tokens if t in vocab]
            if clash:
                raise ConceptError(placeholder, f"placeholder token {clash[0]!r} is already in "
                                   f"the vocabulary of {key}; choose another --placeholder-token")
        inits = []
        for tokenizer, text_encoder, key in towers:
            base = token_embedding(text_encoder).weight.detach()
            if self.s.initializer_token == "mean":
                # over the tokenizer's rows only: t5-base has never-trained rows beyond them
                inits.append(base[: min(len(tokenizer), base.shape[0])].mean(dim=0))
                continue
            ids = tokenizer(self.s.initializer_token, add_special_tokens=False).input_ids
            if len(ids) != 1:
                raise ConceptError(self.s.initializer_token,
                                   f"initializer must be one token of {key} (it is {len(ids)}) "
                                   "or 'mean'")
            inits.append(base[ids[0]].clone())
        self.tables: list[torch.nn.Embedding] = []
        self.ids: list[list[int]] = []
        self.keep: list[torch.Tensor] = []
        self.original: list[torch.Tensor] = []
        for (tokenizer, text_encoder, _), init in zip(towers, inits, strict=True):
            rows = token_embedding(text_encoder).num_embeddings
            known = min(len(tokenizer), rows)
            tokenizer.add_tokens(tokens)
            # new tokens take the spare rows first (t5-base: 28), then new rows
            table = resize_token_embedding(text_encoder, max(rows, known + len(tokens)))
            ids = tokenizer.convert_tokens_to_ids(tokens)
            with torch.no_grad():
                table.weight[ids] = init
            keep = torch.ones(table.num_embeddings, dtype=torch.bool)
            keep[ids] = False
            self.tables.append(table)
            self.ids.append(ids)
            self.keep.append(keep)
            self.original.append(table.weight.detach().clone())
            table.weight.requires_grad_(True)
        if self.s.num_vectors > 1:
            self.model.token_expansions[placeholder] = " ".join(tokens)
        self.model.clear_prompt_cache()
        return [table.weight for table in self.tables]

    @property
    def text_needs_grad(self) -> bool:
        return True

    @property
    def templates(self) -> tuple[str, ...]:
        return TI_TEMPLATES

    def after_step(self) -> None:
        with torch.no_grad():
            for table, keep, original in zip(self.tables, self.keep, self.original, strict=True):
                table.weight[keep] = original[keep]

    def embeds(self, tower: int = 0) -> torch.Tensor:
        """The learned rows ``(num_vectors, d)`` of one text tower (float32, CPU)."""
        return self.tables[tower].weight.detach()[self.ids[tower]].float().cpu().clone()

    def state(self) -> dict[str, torch.Tensor]:
        return {("embeds" if i == 0 else f"embeds_{i}"): self.embeds(i)
                for i in range(len(self.tables))}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for i, table in enumerate(self.tables):
                table.weight[self.ids[i]] = state["embeds" if i == 0 else f"embeds_{i}"].to(
                    table.weight)

    def save(self, folder: Path) -> None:
        placeholder = self.s.placeholder_token or ""
        data = {ti_tensor_name(placeholder, i, encoder_key): self.embeds(i).contiguous()
                for i, (_, encoder_key) in enumerate(self.model.text_towers)}
        atomic_write_path(folder / TI_FILE, lambda tmp: save_file(data, str(tmp)))


class DreamBooth(Strategy):
    """The whole UNet trains."""

    def prepare(self) -> list[torch.nn.Parameter]:
        unet = self.model.components[self.model.denoiser_key]
        unet.requires_grad_(True)
        return list(unet.parameters())

    def state(self) -> dict[str, torch.Tensor]:
        unet = self.model.components[self.model.denoiser_key]
        return {k: v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.model.components[self.model.denoiser_key].load_state_dict(state)

    def save(self, folder: Path) -> None:
        target = folder / DREAMBOOTH_DIR
        tmp = folder / f".{DREAMBOOTH_DIR}.part"
        shutil.rmtree(tmp, ignore_errors=True)
        denoiser = self.model.components[self.model.denoiser_key]
        denoiser.save_pretrained(str(tmp), safe_serialization=True)
        old = folder / f".{DREAMBOOTH_DIR}.old"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)


class LoRA(Strategy):
    """A peft LoRA adapter (named after the concept) on the UNet trains."""

    def prepare(self) -> list[torch.nn.Parameter]:
        from peft import LoraConfig

        unet = self.model.components[self.model.denoiser_key]
        config = LoraConfig(r=self.s.rank, lora_alpha=self.s.alpha, init_lora_weights="gaussian",
                            target_modules=list(self.s.lora_targets))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.s.seed)  # gaussian A init: reproducible, global RNG untouched
            unet.add_adapter(config, adapter_name=self.s.name)
        params = [p for n, p in unet.named_parameters() if "lora_" in n]
        for p in params:
            p.requires_grad_(True)
        return params

    def state(self) -> dict[str, torch.Tensor]:
        unet = self.model.components[self.model.denoiser_key]
        return {n: p.detach().cpu().contiguous() for n, p in unet.named_parameters()
                if "lora_" in n}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        unet = self.model.components[self.model.denoiser_key]
        params = dict(unet.named_parameters())
        with torch.no_grad():
            for key, value in state.items():
                params[key].copy_(value)

    def save(self, folder: Path) -> None:
        unet = self.model.components[self.model.denoiser_key]
        tmp = folder / f".{LORA_FILE}.dir"
        shutil.rmtree(tmp, ignore_errors=True)
        unet.save_lora_adapter(str(tmp), adapter_name=self.s.name, weight_name=LORA_FILE,
                               safe_serialization=True)
        os.replace(tmp / LORA_FILE, folder / LORA_FILE)
        shutil.rmtree(tmp, ignore_errors=True)


STRATEGIES: dict[str, type[Strategy]] = {
    "ti": TextualInversion, "dreambooth": DreamBooth, "lora": LoRA,
}


# -- checkpoints -----------------------------------------------------------------------------------


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "plain": plain}


def _optimizer_state(tensors: dict[str, torch.Tensor], info: dict) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, entry in info["plain"].items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": info["param_groups"]}


def checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints of a concept folder, oldest first."""
    root = folder / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / "state.json").is_file())


# -- the loop --------------------------------------------------------------------------------------


def _amp(device: torch.device, mode: str) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a GradScaler)."""
    if device.type != "cuda" or mode == "no":
        return None, False
    if mode == "fp16" or (mode == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16, True
    return torch.bfloat16, False


def _step_seed(seed: int, step: int, micro: int) -> int:
    return int(np.random.default_rng([seed, step, micro]).integers(0, 2**63 - 1))


def train(
    model: ModelFamily,
    settings: TrainSettings,
    clips: Sequence[TrainingClip] | Sequence[np.ndarray],
    concepts_dir: Path,
    *,
    clip_paths: Sequence[Path] = (),
    mix: MixAugmenter | None = None,
    resume: bool = False,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train a concept on ``model`` (changed in place) and save it as ``<concepts_dir>/<name>``.

    Args:
        model: a freshly loaded family adapter in float32 (its base weights are fingerprinted
            before training changes them).
        settings: the run's settings.
        clips: training clips, each ``(samples,)`` float32 at ``model.sample_rate``, all the
            same length (the training clip length; 10.24 s for the full models).
        concepts_dir: where the concept folder goes.
        clip_paths: the clips' files, recorded with their sha256 in ``concept.yaml``.
        mix: DreamSound MIX augmenter (other sounds), applied to ``mix_variants`` cached
            variants per clip with ``mix_probability``.
        resume: continue from the newest checkpoint in the concept folder.
        on_step: ``on_step(step, total, loss)`` after every optimizer step; raising
            (``KeyboardInterrupt``) stops the run, leaving the checkpoints written so far.

    Returns:
        The concept's metadata, folder and per-step losses.

    Raises:
        ConceptError: invalid name, an existing concept without ``resume``, a placeholder token
            already in the vocabulary.
        TrainingError: ``resume`` without a checkpoint, or a checkpoint of other settings/model.
    """
    s = settings.resolved()
    assert s.steps is not None and s.grad_accum is not None
    if s.method == "lora" and s.lora_targets == DEFAULT_LORA_TARGETS and model.lora_targets:
        s.lora_targets = model.lora_targets  # the family's DiT has other layer names
    folder = concept_dir(concepts_dir, s.name)
    ckpts = checkpoints(folder)
    if resume and not ckpts:
        raise TrainingError(f"{folder}: no checkpoint to resume from")
    if not resume and (folder / CONCEPT_FILE).exists():
        raise ConceptError(folder, "a concept with this name already exists; choose another "
                           "name or delete the folder (nothing was changed)")
    if not resume and ckpts:
        raise ConceptError(folder, "has checkpoints of an unfinished run: pass --resume to "
                           "continue it, or delete the folder")
    base_fp = fingerprint(model)
    for module in model.components.values():
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False).eval()

    sr = model.sample_rate
    waves = [np.asarray(c.waveform if isinstance(c, TrainingClip) else c, dtype=np.float32)
             for c in clips]
    if not waves:
        raise TrainingError("no training clips")
    duration = waves[0].shape[0] / sr
    given = [c.caption if isinstance(c, TrainingClip) else None for c in clips]
    if any(g is not None for g in given) and None in given:
        raise TrainingError("either every training clip has a caption or none has")
    captions: list[str] | None = None if None in given else [str(g) for g in given]
    strategy = STRATEGIES[s.method](model, s)

    # class clips for prior preservation: generated by the base model, before anything changes
    class_latents: torch.Tensor | None = None
    class_prompt = f"a recording of a {s.class_word}"
    if s.method == "dreambooth" and s.prior_preservation:
        class_latents = torch.cat([
            sample(model, GenerationRequest(prompt=class_prompt, seed=s.seed + k,
                                            num_inference_steps=s.class_steps,
                                            duration=duration), return_latents=True).latents
            for k in range(s.num_class_clips)
        ]).to(model.device, model.dtype)

    params = strategy.prepare()
    beats = (BeatSyncMixup(waves, sr, tolerance_bpm=s.mixup_tolerance_bpm, seed=s.seed)
             if s.mixup is not None else None)
    augmented = mix is not None or beats is not None
    dataset = ConceptDataset(
        waves, s.placeholder_token or "", prompt_mode="templates", templates=strategy.templates,
        class_word=s.class_word, repeats=s.mix_variants if augmented else 1, seed=s.seed,
        mix=mix, mix_probability=s.mix_probability,
        beat_mixup=beats if s.mixup == "bam" else None,
        beat_mixup_probability=s.mixup_probability,
    )
    with torch.no_grad():
        latents = torch.cat([
            model.audio_to_latents(dataset.example(i, 0).waveform[None], duration)
            for i in range(len(dataset))
        ])
        if s.mixup == "blm":
            assert beats is not None
            latents = _latent_mixup(model, latents, beats, waves, duration, s)
    scheduler = noise_scheduler(model)
    optimizer = torch.optim.AdamW(params, lr=s.effective_lr, weight_decay=s.weight_decay)
    amp_dtype, use_scaler = _amp(model.device, s.mixed_precision)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    start = 0
    losses: list[float] = []
    if resume:
        start, losses = _load_checkpoint(ckpts[-1], strategy, optimizer, scaler, s, base_fp)
        log.info("resuming %s from step %d", s.name, start)
    settings_record = s.to_record()

    def micro_loss(step: int, micro: int) -> torch.Tensor:
        gen = torch.Generator("cpu").manual_seed(_step_seed(s.seed, step, micro))
        rng = np.random.default_rng([s.seed, step, micro])
        idx = rng.integers(0, len(dataset), size=s.batch_size)
        if captions is not None:  # each clip's own caption (item i is clip i % clips)
            prompts = [strategy.prompt(captions[int(i) % len(captions)]) for i in idx]
        else:
            prompts = [strategy.prompt(strategy.templates[int(rng.integers(
                len(strategy.templates)))]) for _ in idx]
        z0 = latents[torch.as_tensor(idx)]
        autocast = (torch.autocast("cuda", dtype=amp_dtype) if amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            if strategy.text_needs_grad:
                cond = model.encode_text(prompts)
            else:
                with torch.no_grad():
                    cond = model.encode_text(prompts)
            loss = denoising_loss(model, scheduler, z0, cond, gen)
            if class_latents is not None:
                j = int(rng.integers(0, class_latents.shape[0]))
                with torch.no_grad():
                    class_cond = model.encode_text([class_prompt])
                loss = loss + s.prior_weight * denoising_loss(
                    model, scheduler, class_latents[j : j + 1], class_cond, gen)
        return loss

    for step in range(start, s.steps):
        total = 0.0
        for micro in range(s.grad_accum):
            loss = micro_loss(step, micro) / s.grad_accum
            scaler.scale(loss).backward()
            total += float(loss.detach())
        if s.max_grad_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        strategy.after_step()
        losses.append(total)
        done = step + 1
        if s.checkpoint_every and done % s.checkpoint_every == 0 and done < s.steps:
            _save_checkpoint(folder, done, strategy, optimizer, scaler, settings_record, base_fp,
                             losses)
        if on_step is not None:
            on_step(done, s.steps, total)

    for module in model.components.values():
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False).eval()
    model.clear_prompt_cache()
    _save_checkpoint(folder, s.steps, strategy, optimizer, scaler, settings_record, base_fp,
                     losses)
    strategy.save(folder)
    meta = ConceptMeta(
        name=s.name,
        method=s.method,
        placeholder_token=s.placeholder_token or "",
        initializer_token=s.initializer_token if s.method == "ti" else None,
        num_vectors=s.num_vectors if s.method == "ti" else 1,
        class_word=s.class_word if s.method != "ti" else None,
        base_model=model.model_id,
        family=model.name,
        base_fingerprint=base_fp,
        training={**settings_record, "effective_lr": s.effective_lr,
                  "clip_seconds": round(duration, 4), "final_loss": losses[-1] if losses else None,
                  "mix": mix is not None, "mixup": s.mixup},
        clips=clip_records(list(clip_paths),
                           captions if captions and len(clip_paths) == len(captions) else None),
    )
    write_meta(folder, meta)  # last: a concept.yaml means the weights are complete
    return TrainResult(meta, folder, losses, resumed_from=start)


def _latent_mixup(
    model: ModelFamily,
    latents: torch.Tensor,
    beats: BeatSyncMixup,
    waves: Sequence[np.ndarray],
    duration: float,
    s: TrainSettings,
) -> torch.Tensor:
    """BLM (MusicLDM): each cached latent ``(items, channels, frames, bins)``, with
    ``mixup_probability``, mixed with the clean latent of a tempo-compatible clip, aligned on the
    first downbeats (:func:`~dreamsampler.engine.training.augment.beat_aligned_latent_mixup`).
    Item ``i`` draws from ``default_rng([seed, "blm", i])``."""
    clean = torch.cat([model.audio_to_latents(torch.from_numpy(w)[None], duration)
                       for w in waves])
    fps = getattr(model, "latent_frame_rate", None)
    if fps is None:
        raise TrainingError(f"mixup 'blm' needs a latent frame rate; the {model.name} family "
                            "has none (use 'bam')")
    out = latents.clone()
    for i in range(latents.shape[0]):
        rng = np.random.default_rng([s.seed, 0xB1A, i])
        anchor = i % len(waves)
        partners = beats.partners(anchor)
        if not partners or rng.random() >= s.mixup_probability:
            continue
        j = partners[int(rng.integers(len(partners)))]
        a, b = beats.beats[anchor], beats.beats[j]
        assert a is not None and b is not None
        out[i] = beat_aligned_latent_mixup(latents[i], clean[j], fps, a, b, rng=rng).mix
    return out


def _save_checkpoint(
    folder: Path,
    step: int,
    strategy: Strategy,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    settings: dict[str, Any],
    base_fp: str,
    losses: list[float],
) -> Path:
    """Write ``checkpoints/step-NNNNNNNN`` atomically (temp folder + rename); keep only it."""
    root = folder / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(strategy.state(), str(tmp / "trainable.safetensors"))
    tensors, info = _optimizer_tensors(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    state = {"step": step, "settings": settings, "base_fingerprint": base_fp,
             "optimizer": info, "scaler": scaler.state_dict(), "losses": losses}
    atomic_write_text(tmp / "state.json", json.dumps(state))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoints(folder):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


# settings that may differ between a run and its resumption
_RESUMABLE = {"steps", "checkpoint_every"}


def _load_checkpoint(
    path: Path,
    strategy: Strategy,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    settings: TrainSettings,
    base_fp: str,
) -> tuple[int, list[float]]:
    state = json.loads((path / "state.json").read_text())
    if state["base_fingerprint"] != base_fp:
        raise TrainingError(f"{path}: checkpoint was trained on another base model "
                            f"(fingerprint {state['base_fingerprint'][:16]}… vs {base_fp[:16]}…)")
    ours = settings.to_record()
    changed = sorted(k for k, v in state["settings"].items()
                     if k not in _RESUMABLE and ours.get(k) != v)
    if changed:
        shown = ", ".join(f"{k}: {state['settings'][k]!r} → {ours.get(k)!r}" for k in changed)
        raise TrainingError(f"{path}: settings differ from the checkpoint's ({shown})")
    strategy.load_state(load_file(str(path / "trainable.safetensors")))
    tensors = load_file(str(path / "optimizer.safetensors"))
    optimizer.load_state_dict(_optimizer_state(tensors, state["optimizer"]))
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    step = int(state["step"])
    if step > (settings.steps or 0):
        raise TrainingError(
            f"{path}: checkpoint is at step {step}, beyond --steps {settings.steps}")
    return step, list(state["losses"])

