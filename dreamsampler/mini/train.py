"""Train the ``mini`` model on the rendered mini world, stage by stage, on a CPU time budget.

    python -m dreamsampler.mini.train --out dreamsampler/mini/model            # all stages
    python -m dreamsampler.mini.train --out DIR --stage vocoder --minutes 6    # one stage

Stages (each reads the previous ones' saved components from ``--out``):

1. ``vocoder``: nothing to train: Griffin-Lim (:mod:`dreamsampler.mini.vocoder`, which says why
   not a HiFi-GAN) is written to ``vocoder/``.
2. ``vae``: ``AutoencoderKL`` on log-mel crops: L1 reconstruction + 1e-6 · KL (the KL-regularised
   autoencoder of Rombach et al. 2022, without its GAN/perceptual terms). Its ``scaling_factor``
   is set to 1 / std of the training latents (Rombach et al. 2022, sec. G).
3. ``text``: the CLAP text tower alone: the embeddings of distinct captions are pushed apart
   (uniformity loss), so the UNet can tell them apart from its first step.
4. ``unet``: ``UNet2DConditionModel`` on the VAE latents of the captioned clips, conditioned on the
   text tower's embeddings, the tower trained along at a tenth of the rate (``--no-joint-text``:
   frozen): the v-prediction loss (Salimans & Ho 2022, sec. 4; ``--prediction-type epsilon`` for
   DDPM's ε-loss, Ho et al. 2020, eq. 14) with 10 % of captions dropped to "" for classifier-free
   guidance (Ho & Salimans 2022); batches draw a family uniformly, then a clip of it; the saved
   UNet and tower are exponential moving averages of the weights. Every ``--validate-minutes`` the
   adherence at one seed is logged (:func:`validate`). Why v and not ε: an ε-trained UNet barely
   used its caption (docs/mini.md: denoising loss 0.0120 with the right caption, 0.0125 with a
   wrong one, 0.0123 with none, at t = 500): near pure noise ε is predicted well without knowing
   what the clip is, so the ε-loss hardly rewards it, while v weighs the clean signal there (weight
   SNR + 1 on the x0 error instead of SNR).
5. ``decoder``: the VAE decoder alone, the encoder frozen (so the UNet's latents keep their
   meaning), with an L1 that weights the sounding bins (log-mel > -6) 5 × the near-silent ones:
   the harmonics that carry the pitch, not the silence floor. It can run while the UNet trains.

Only the trained families (:data:`dreamsampler.mini.data.TRAINED`) are seen; the held-out
instruments never are. Learning rates follow the elapsed fraction of each stage's time budget
(warm-up, then linear decay to zero), so a stage always ends annealed; the log records the
steps it reached. Everything runs with ``torch.set_num_threads(1)``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dreamsampler.engine.families import LogMelFrontEnd
from dreamsampler.mini import data
from dreamsampler.mini import model as mini_model

STAGES = ("vocoder", "vae", "text", "unet", "decoder")
DEFAULT_MINUTES = {"vocoder": 0.0, "vae": 6.0, "text": 1.0, "unet": 40.0, "decoder": 8.0}


def log(message: str, path: Path | None = None) -> None:
    line = f"{time.strftime('%H:%M:%S')} {message}"
    print(line, flush=True)
    if path is not None:
        with path.open("a") as fh:
            fh.write(line + "\n")


def front_end() -> LogMelFrontEnd:
    return LogMelFrontEnd(mini_model.SAMPLE_RATE, mini_model.N_MELS, mini_model.HOP_LENGTH)


def training_set(directory: Path, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str],
                                                     list[str]]:
    """Rendered clips of the trained families: normalised waveforms ``(n, samples)`` (peak 0.5,
    as the model's front end), log-mels ``(n, 1, FRAMES, 64)``, captions and family names."""
    data.build_dataset(directory, seed=seed, instruments=data.TRAINED)
    audio, clips = data.load_dataset(directory)
    fe = front_end()
    wave = fe.normalize(torch.from_numpy(audio), data.FRAMES)[:, : data.CLIP_SAMPLES]
    mel = torch.cat([fe(wave[i : i + 64], data.FRAMES) for i in range(0, len(wave), 64)])
    return wave, mel, [c.caption for c in clips], [c.instrument for c in clips]


class Schedule:
    """Learning rate by elapsed fraction of a time budget: linear warm-up over the first 5 %,
    then linear decay to 0."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, seconds: float,
                 max_steps: int | None) -> None:
        self.optimizer, self.lr, self.seconds, self.max_steps = optimizer, lr, seconds, max_steps
        self.start = time.perf_counter()
        self.step = 0

    def fraction(self) -> float:
        by_time = (time.perf_counter() - self.start) / self.seconds
        if self.max_steps is not None:
            return self.step / self.max_steps
        return by_time

    def next(self) -> bool:
        """Set the rate for the next step; False once the budget is spent."""
        f = self.fraction()
        if f >= 1.0:
            return False
        scale = min(1.0, f / 0.05) if f < 0.05 else (1.0 - f) / 0.95
        for group in self.optimizer.param_groups:
            group["lr"] = group.get("base_lr", self.lr) * max(scale, 0.02)
        self.step += 1
        return True


def random_crops(mel: torch.Tensor, batch: int, crop: int, rng: random.Random) -> torch.Tensor:
    """``batch`` random ``crop``-frame windows (starting on a multiple of 4 frames, the VAE's
    downsampling) of random clips of ``mel`` ``(n, 1, FRAMES, bins)``:
    ``(batch, 1, crop, bins)``."""
    idx = [rng.randrange(len(mel)) for _ in range(batch)]
    starts = [rng.randrange(0, data.FRAMES - crop + 1, 4) for _ in idx]
    return torch.stack([mel[i, :, s : s + crop] for i, s in zip(idx, starts, strict=True)])


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: Any) -> None:
    """One step on ``loss`` with the gradient norm of ``params`` clipped to 1."""
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def train_vae(mel: torch.Tensor, vae: Any, seconds: float, max_steps: int | None,
              rng: random.Random, logfile: Path) -> dict[str, Any]:
    # start at the data's scale: inputs standardised by the first conv, outputs centred on the
    # mean log-mel (the silent floor log(1e-5) = -11.5 is far from 0; without this the first
    # hundreds of steps only learn the offset)
    with torch.no_grad():
        vae.encoder.conv_in.weight.div_(float(mel.std()))
        vae.decoder.conv_out.bias.fill_(float(mel.mean()))
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    sched = Schedule(opt, 2e-3, seconds, max_steps)
    crop, batch = 32, 8
    losses: list[float] = []
    vae.train()
    while sched.next():
        x = random_crops(mel, batch, crop, rng)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        rec = (recon - x).abs().mean()
        loss = rec + 1e-6 * posterior.kl().mean()
        optimizer_step(opt, loss, vae.parameters())
        losses.append(float(rec.detach()))
        if sched.step % 50 == 0:
            log(f"vae step {sched.step} L1 {np.mean(losses[-50:]):.4f}", logfile)
    vae.eval()
    return {"steps": sched.step, "l1_first_50": float(np.mean(losses[:50])),
            "l1_last_50": float(np.mean(losses[-50:])), "batch": batch, "crop_frames": crop,
            "lr": 2e-3}


def train_decoder(mel: torch.Tensor, vae: Any, seconds: float, max_steps: int | None,
                  rng: random.Random, logfile: Path) -> dict[str, Any]:
    params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    vae.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    sched = Schedule(opt, 1e-3, seconds, max_steps)
    crop, batch = 32, 8
    losses: list[float] = []
    vae.decoder.train()
    while sched.next():
        x = random_crops(mel, batch, crop, rng)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample()
        recon = vae.decode(z).sample
        weight = 1.0 + 4.0 * (x > -6.0).float()
        loss = ((recon - x).abs() * weight).mean()
        optimizer_step(opt, loss, params)
        losses.append(float(loss.detach()))
        if sched.step % 50 == 0:
            log(f"decoder step {sched.step} weighted L1 {np.mean(losses[-50:]):.4f}", logfile)
    vae.eval()
    return {"steps": sched.step, "weighted_l1_first_50": float(np.mean(losses[:50])),
            "weighted_l1_last_50": float(np.mean(losses[-50:])), "batch": batch,
            "crop_frames": crop, "lr": 1e-3}


def caption_ids(tok: Any, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and mask of ``captions``, cut to the longest (a shorter sequence is the same
    computation under the mask)."""
    ids = tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt")
    length = int(ids.attention_mask.sum(1).max())
    return ids.input_ids[:, :length], ids.attention_mask[:, :length]


def text_embeddings(text_encoder: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The family's conditioning: pooled, projected, L2-normalised CLAP text features."""
    out = text_encoder.get_text_features(ids, attention_mask=mask)
    return F.normalize(out.pooler_output if hasattr(out, "pooler_output") else out, dim=-1)


def train_text(captions: list[str], text_encoder: Any, tok: Any, seconds: float,
               max_steps: int | None, logfile: Path) -> dict[str, Any]:
    """Spread the captions' embeddings apart: minimise the uniformity loss (Wang & Isola 2020)
    over the embeddings of distinct captions (and the empty prompt). A randomly initialised
    tower maps all captions to nearly one direction (cosine 0.999 between "a piano playing A5"
    and "a flute playing E4" in the first run), which the UNet then cannot tell apart."""
    unique = [*sorted(set(captions)), ""]
    ids, mask = caption_ids(tok, unique)
    params = [*text_encoder.text_model.parameters(), *text_encoder.text_projection.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    sched = Schedule(opt, 1e-3, seconds, max_steps)
    off = ~torch.eye(len(unique), dtype=torch.bool)
    with torch.no_grad():
        e = text_embeddings(text_encoder, ids, mask)
        before = float((e @ e.T)[off].abs().max())
    text_encoder.train()
    while sched.next():
        e = text_embeddings(text_encoder, ids, mask)
        # the uniformity loss of Wang & Isola (2020), eq. 5 (t = 2): close pairs weigh most
        loss = torch.log(torch.exp(-2.0 * (2.0 - 2.0 * (e @ e.T)[off])).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched.step % 50 == 0:
            log(f"text step {sched.step} uniformity {float(loss):.4f}", logfile)
    text_encoder.eval()
    with torch.no_grad():
        e = text_embeddings(text_encoder, ids, mask)
        cos = (e @ e.T)[off]
    return {"steps": sched.step, "max_cos_before": before, "max_cos_after": float(cos.max()),
            "mean_abs_cos_after": float(cos.abs().mean()), "lr": 1e-3}


@torch.no_grad()
def encode_latents(vae: Any, mel: torch.Tensor) -> torch.Tensor:
    """Unscaled latent means ``(n, 8, 32, 16)``."""
    return torch.cat([vae.encode(mel[i : i + 32]).latent_dist.mode()
                      for i in range(0, len(mel), 32)])


@torch.no_grad()
def validate(components: dict[str, Any], classifier: Any, seed: int = 0, steps: int = 20,
             guidance: float = 3.0) -> dict[str, Any]:
    """Adherence of the model as it is now, at one seed: the components as a
    :class:`~dreamsampler.engine.audioldm.MusicLDMFamily`, sampled by the engine's own loop and
    measured by :func:`dreamsampler.mini.evaluate.adherence` (the full figure, over 20 seeds, is
    ``dreamsampler eval --mini adherence``).

    Args:
        components: ``tokenizer``, ``text_encoder``, ``vae``, ``unet``, ``vocoder``,
            ``scheduler`` (used as they are, in eval mode).
    """
    from dreamsampler.engine.audioldm import MusicLDMFamily
    from dreamsampler.mini.evaluate import adherence, adherence_prompts

    keys = ("tokenizer", "text_encoder", "vae", "unet", "vocoder", "scheduler")
    family = MusicLDMFamily("mini (training)", {k: components[k] for k in keys},
                            torch.device("cpu"), torch.float32)
    result = adherence(family, classifier, adherence_prompts(), [seed], steps, guidance)
    return {"instrument": result["instrument_accuracy"],
            "pitch": result["pitch_within_semitone"], "clips": len(result["per_prompt"])}


def train_unet(latents: torch.Tensor, captions: list[str], families: list[str],
               components: dict[str, Any], seconds: float, max_steps: int | None,
               rng: random.Random, logfile: Path, joint_text: bool = False,
               validate_every: float = 300.0) -> tuple[dict[str, Any], Any, Any]:
    """The UNet on the latents, conditioned on the caption embeddings of the text tower (stage
    ``text``): frozen, or trained with the UNet (``joint_text``, as the LDM text transformer of
    Rombach et al. 2022, sec. 4.3, at a tenth of the UNet's learning rate). Batches draw a family
    uniformly, then one of its clips, so a family with few captions (drums) weighs as much as
    one with many (piano). Every ``validate_every`` seconds :func:`validate` logs adherence.

    Returns:
        ``(stats, EMA UNet, EMA text tower)``.
    """
    unet, text_encoder, tok = components["unet"], components["text_encoder"], \
        components["tokenizer"]
    scheduler = components["scheduler"]
    unique = [*sorted(set(captions)), ""]
    ids, mask = caption_ids(tok, unique)
    caption_row = {c: i for i, c in enumerate(unique)}
    by_family: dict[str, list[int]] = {}
    for i, f in enumerate(families):
        by_family.setdefault(f, []).append(i)
    family_names = sorted(by_family)
    text_lr = 1e-4
    groups = [{"params": list(unet.parameters()), "base_lr": 1e-3}]
    text_params = [*text_encoder.text_model.parameters(),
                   *text_encoder.text_projection.parameters()]
    text_encoder.requires_grad_(False)
    if joint_text:
        for q in text_params:
            q.requires_grad_(True)
        groups.append({"params": text_params, "base_lr": text_lr, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=1e-3, weight_decay=1e-4)
    sched = Schedule(opt, 1e-3, seconds, max_steps)
    ema_unet = copy.deepcopy(unet).requires_grad_(False)
    ema_text = copy.deepcopy(text_encoder).requires_grad_(False).eval()
    batch = 16
    ema_max = 0.999
    losses: list[float] = []
    checks: list[dict[str, Any]] = []
    classifier = components.get("classifier")
    last_check = time.perf_counter()
    unet.train()
    text_encoder.train(joint_text)
    with torch.no_grad():
        table = text_embeddings(text_encoder, ids, mask)
    while sched.next():
        idx = [rng.choice(by_family[rng.choice(family_names)]) for _ in range(batch)]
        rows = [caption_row[captions[i] if rng.random() >= 0.1 else ""] for i in idx]
        labels = (text_embeddings(text_encoder, ids[rows], mask[rows]) if joint_text
                  else table[rows])
        x0 = latents[idx]
        noise = torch.randn_like(x0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,))
        noisy = scheduler.add_noise(x0, noise, t)
        pred = unet(noisy, t, encoder_hidden_states=None, class_labels=labels).sample
        target = (scheduler.get_velocity(x0, noise, t)
                  if scheduler.config.prediction_type == "v_prediction" else noise)
        loss = F.mse_loss(pred, target)
        optimizer_step(opt, loss, unet.parameters())
        decay = min(ema_max, (1 + sched.step) / (10 + sched.step))
        with torch.no_grad():
            for pe, pl in zip(ema_unet.parameters(), unet.parameters(), strict=True):
                pe.lerp_(pl, 1 - decay)
            if joint_text:
                for pe, pl in zip(ema_text.parameters(), text_encoder.parameters(), strict=True):
                    pe.lerp_(pl, 1 - decay)
        losses.append(float(loss.detach()))
        if sched.step % 100 == 0:
            log(f"unet step {sched.step} loss {np.mean(losses[-100:]):.4f}", logfile)
        if classifier is not None and time.perf_counter() - last_check >= validate_every:
            check = validate({**components, "unet": ema_unet, "text_encoder": ema_text},
                             classifier)
            check.update(step=sched.step,
                         minutes=round((time.perf_counter() - sched.start) / 60, 1))
            checks.append(check)
            log(f"unet check {check}", logfile)
            last_check = time.perf_counter()
    log(f"unet: {sched.step} steps", logfile)
    stats = {"steps": sched.step, "loss_first_100": float(np.mean(losses[:100])),
             "loss_last_100": float(np.mean(losses[-100:])), "batch": batch, "lr": 1e-3,
             "text_lr": text_lr if joint_text else 0.0, "joint_text": joint_text,
             "caption_dropout": 0.1, "ema": ema_max, "sampling": "family-balanced",
             "prediction_type": scheduler.config.prediction_type,
             "captions": len(unique) - 1, "channels": list(unet.config.block_out_channels),
             "params": sum(q.numel() for q in unet.parameters()), "checks": checks}
    return stats, ema_unet.eval(), ema_text


def save_index(out: Path) -> None:
    index = {"_class_name": "MusicLDMPipeline", "_diffusers_version": "0.42.1",
             "tokenizer": ["transformers", "RobertaTokenizer"],
             "text_encoder": ["transformers", "ClapModel"],
             "vae": ["diffusers", "AutoencoderKL"],
             "unet": ["diffusers", "UNet2DConditionModel"],
             "vocoder": ["dreamsampler.mini.vocoder", "GriffinLimVocoder"],
             "scheduler": ["diffusers", "DDIMScheduler"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def _save(module: Any, path: Path) -> None:
    """float16 safetensors (the package stays a few MB; loading casts back to float32)."""
    module.to(torch.float16).save_pretrained(path, safe_serialization=True)
    module.to(torch.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the mini model (see module docstring).")
    parser.add_argument("--out", type=Path, required=True, help="diffusers folder to write")
    parser.add_argument("--data", type=Path, default=data.default_cache(),
                        help="where the rendered set is cached")
    parser.add_argument("--stage", choices=[*STAGES, "all"], default="all")
    parser.add_argument("--minutes", type=float, default=None,
                        help="time budget of the stage (default per stage: "
                             f"{DEFAULT_MINUTES})")
    parser.add_argument("--steps", type=int, default=None,
                        help="a fixed step count instead of the time budget (reproducible)")
    parser.add_argument("--seed", type=int, default=0, help="data and weight seed")
    parser.add_argument("--unet-channels", type=int, nargs=3, default=mini_model.UNET_CHANNELS,
                        help="the UNet's block_out_channels")
    parser.add_argument("--prediction-type", choices=["v_prediction", "epsilon"],
                        default=mini_model.PREDICTION_TYPE, help="the UNet's target")
    parser.add_argument("--joint-text", action=argparse.BooleanOptionalAction, default=True,
                        help="train the text tower along with the UNet in stage unet (the "
                             "shipped model); --no-joint-text keeps stage text's tower frozen")
    parser.add_argument("--validate-minutes", type=float, default=5.0,
                        help="log adherence at one seed this often during stage unet (0: never)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    logfile = out / "train_log.txt"
    card_path = out / "training.json"
    card: dict[str, Any] = json.loads(card_path.read_text()) if card_path.is_file() else {}
    t0 = time.perf_counter()
    _wave, mel, captions, families = training_set(args.data, args.seed)
    log(f"data: {len(captions)} clips, {len(set(captions))} captions, seed {args.seed}, "
        f"{time.perf_counter() - t0:.1f} s", logfile)
    card["data"] = {"seed": args.seed, "clips": len(captions), "captions": len(set(captions)),
                    "variants": 6, "clip_seconds": data.CLIP_SAMPLES / data.SAMPLE_RATE,
                    "families": [i.name for i in data.TRAINED],
                    "held_out": [i.name for i in data.HELD_OUT]}
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tok = mini_model.tokenizer()
    fresh = mini_model.build_components(len(tok), tuple(args.unet_channels),
                                        args.prediction_type)
    stages = STAGES if args.stage == "all" else (args.stage,)
    for stage in stages:
        seconds = 60 * (args.minutes or DEFAULT_MINUTES[stage])
        started = time.perf_counter()
        log(f"stage {stage}: budget {seconds:.0f} s", logfile)
        if stage == "vocoder":
            fresh["vocoder"].save_pretrained(out / "vocoder")  # float32: the filterbank inverse
            stats = {"method": "griffin-lim", "iterations": 32}
        elif stage == "vae":
            vae = fresh["vae"]
            stats = train_vae(mel, vae, seconds, args.steps, rng, logfile)
            lat = encode_latents(vae, mel)
            vae.register_to_config(scaling_factor=float(1.0 / lat.std()))
            stats["scaling_factor"] = float(vae.config.scaling_factor)
            with torch.no_grad():
                recon = vae.decode(lat[:64]).sample
            stats["full_clip_l1"] = float((recon - mel[:64]).abs().mean())
            _save(vae, out / "vae")
        elif stage == "text":
            stats = train_text(captions, fresh["text_encoder"], tok, seconds, args.steps, logfile)
            _save(fresh["text_encoder"], out / "text_encoder")
            tok.save_pretrained(out / "tokenizer")
        elif stage == "decoder":
            from diffusers import AutoencoderKL

            vae = AutoencoderKL.from_pretrained(out / "vae", torch_dtype=torch.float32)
            stats = train_decoder(mel, vae, seconds, args.steps, rng, logfile)
            with torch.no_grad():
                recon = vae.decode(encode_latents(vae, mel[:64])).sample
            stats["full_clip_l1"] = float((recon - mel[:64]).abs().mean())
            _save(vae, out / "vae")
        else:
            from diffusers import AutoencoderKL

            vae = AutoencoderKL.from_pretrained(out / "vae", torch_dtype=torch.float32)
            latents = encode_latents(vae, mel) * vae.config.scaling_factor
            from transformers import ClapModel

            text_encoder = ClapModel.from_pretrained(out / "text_encoder",
                                                     torch_dtype=torch.float32)
            from dreamsampler.mini.measures import fit_classifier

            components = {**fresh, "tokenizer": tok, "text_encoder": text_encoder, "vae": vae,
                          "classifier": fit_classifier() if args.validate_minutes else None}
            stats, unet, text_encoder = train_unet(
                latents, captions, families, components, seconds, args.steps, rng, logfile,
                joint_text=args.joint_text, validate_every=60 * (args.validate_minutes or 1.0))
            _save(unet, out / "unet")
            if args.joint_text:
                _save(text_encoder, out / "text_encoder")
            fresh["scheduler"].save_pretrained(out / "scheduler")
            save_index(out)
        stats["seconds"] = round(time.perf_counter() - started, 1)
        card[stage] = stats
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        log(f"stage {stage} done: {stats}", logfile)
    log(f"total {time.perf_counter() - t0:.0f} s", logfile)
    if math.isnan(float(card.get("unet", {}).get("loss_last_100", 0.0))):
        raise SystemExit("the UNet loss is NaN")


if __name__ == "__main__":
    main()
