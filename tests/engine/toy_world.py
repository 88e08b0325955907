"""A toy world for concept-learning tests: sounds whose identity is measurable, and a tiny base
model pretrained on some of them (so that its text conditioning means something).

* the **concept**: a plucked tone at 440 Hz (three partials, 12/s decay) struck 4 times a second;
  the clips differ in onset phase and level;
* the **world** the base model knows: noise bursts, a sustained 220 Hz tone, a 110 Hz pulse
  train and a 1 kHz beep, each with a caption.

The base is the tiny MusicLDM-shaped pipeline (:mod:`dreamsampler.engine.tiny`) written in the
diffusers folder layout, its VAE scaling factor set so latents have unit variance (as the real
models' factors do), its UNet pretrained for a few hundred steps on the world with the same
:func:`~dreamsampler.engine.training.trainer.denoising_loss` the trainer uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from dreamsampler.engine.families import ModelFamily, load_model
from dreamsampler.engine.tiny import save_tiny_pipeline
from dreamsampler.engine.training.trainer import denoising_loss, noise_scheduler

SR = 16000
SECONDS = 1.0


def pluck(phase: float = 0.0, level: float = 0.4, frequency: float = 440.0,
          rate: float = 4.0, seconds: float = SECONDS) -> np.ndarray:
    """Plucked tone struck ``rate`` times a second from ``phase`` s; ``(samples,)`` float32."""
    t = np.arange(int(SR * seconds)) / SR
    out = np.zeros_like(t)
    for k in range(int(seconds * rate) + 1):
        t0 = k / rate + phase
        on = t >= t0
        tt = t[on] - t0
        out[on] += sum(np.sin(2 * np.pi * frequency * h * tt) / h for h in (1, 2, 3)) * np.exp(
            -12 * tt)
    return (level * out / np.abs(out).max()).astype(np.float32)


def concept_clips(n: int = 5) -> list[np.ndarray]:
    return [pluck(phase=0.012 * i, level=0.3 + 0.05 * i) for i in range(n)]


def world(seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """(caption, clip) pairs the base model is pretrained on."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * SECONDS)) / SR
    items = []
    for i in range(3):
        burst = rng.standard_normal(t.shape) * (np.sin(2 * np.pi * (2 + i) * t) > 0.6)
        items.append(("a noise burst", 0.3 * burst))
        items.append(("a low tone", (0.3 + 0.1 * i) * np.sin(2 * np.pi * 220 * t)))
        pulses = (np.sin(2 * np.pi * (3 + i) * t) > 0.95) * np.sin(2 * np.pi * 110 * t)
        items.append(("a bass pulse", 0.5 * pulses))
        items.append(("a high beep", 0.3 * np.sin(2 * np.pi * 1000 * t) * (t < 0.5 + 0.1 * i)))
    return [(c, np.asarray(x, dtype=np.float32)) for c, x in items]


def contrast_clips() -> list[np.ndarray]:
    """Sounds that are not the concept: noise bursts and a pluck at another pitch and rate."""
    rng = np.random.default_rng(7)
    noise = (0.3 * rng.standard_normal(int(SR * SECONDS))).astype(np.float32)
    return [noise, pluck(frequency=150.0, rate=7.0)]


def write_clips(folder: Path, clips: list[np.ndarray], stem: str = "clip") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, clip in enumerate(clips):
        path = folder / f"{stem}{i}.wav"
        sf.write(path, clip, SR, subtype="FLOAT")
        paths.append(path)
    return paths


def build_base_model(directory: Path, steps: int = 200, seed: int = 0, lr: float = 3e-3,
                     batch: int = 4, name: str = "tiny") -> Path:
    """Write the toy base pipeline (the tiny model ``name``) to ``directory`` and return it.

    From :func:`save_tiny_pipeline`: the text tower is re-initialised at unit gain (Xavier
    weights, N(0, 1) embeddings; the default 0.02 init maps every prompt to nearly the same
    embedding, cosine 0.998), the VAE scaling factor is set for unit-variance latents, the
    scheduler predicts ``v`` (Salimans & Ho 2022: no x0 error blow-up at high noise for a weakly
    trained toy denoiser), and the UNet is pretrained on :func:`world` with the trainer's own
    :func:`denoising_loss`.
    """
    save_tiny_pipeline(directory, name)
    sched_path = directory / "scheduler" / "scheduler_config.json"
    sched = json.loads(sched_path.read_text())
    sched["prediction_type"] = "v_prediction"
    sched_path.write_text(json.dumps(sched, indent=2))
    model = load_model(str(directory), "cpu")
    text_encoder = model.components["text_encoder"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in text_encoder.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_normal_(module.weight)
            elif isinstance(module, torch.nn.Embedding):
                torch.nn.init.normal_(module.weight)
    text_encoder.save_pretrained(str(directory / "text_encoder"), safe_serialization=True)
    model.clear_prompt_cache()
    items = world(seed)
    with torch.no_grad():
        raw = torch.cat([model.audio_to_latents(torch.from_numpy(x)[None], SECONDS)
                         for _, x in items])
    scale = round(float(1.0 / raw.std()), 4)
    config_path = directory / "vae" / "config.json"
    config = json.loads(config_path.read_text())
    config["scaling_factor"] = scale
    config_path.write_text(json.dumps(config, indent=2))
    latents = raw * scale
    unet = model.components["unet"]
    unet.requires_grad_(True)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    scheduler = noise_scheduler(model)
    scheduler.register_to_config(prediction_type="v_prediction")
    with torch.no_grad():
        conds = model.encode_text([c for c, _ in items])
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(items), (batch,), generator=gen)
        loss = denoising_loss(model, scheduler, latents[idx], conds[idx], gen)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    unet.requires_grad_(False)
    unet.save_pretrained(str(directory / "unet"), safe_serialization=True)
    return directory


def load_base(directory: Path) -> ModelFamily:
    return load_model(str(directory), "cpu")


def latents_of(model: ModelFamily, clips: list[np.ndarray]) -> torch.Tensor:
    """VAE latents ``(n, channels, frames, bins)`` of ``(samples,)`` clips."""
    with torch.no_grad():
        return torch.cat([model.audio_to_latents(torch.from_numpy(c)[None], SECONDS)
                          for c in clips])


def cosine_to(latent: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean cosine similarity between one latent and each target latent (flattened)."""
    a = latent.flatten().float()
    return float(torch.stack([torch.nn.functional.cosine_similarity(a, t.flatten().float(), dim=0)
                              for t in targets]).mean())
