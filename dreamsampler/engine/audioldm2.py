"""AudioLDM 2 (Liu et al. 2024, arXiv 2308.05734) as a model family: ``cvssp/audioldm2``,
``cvssp/audioldm2-music``.

Text path (as diffusers' ``AudioLDM2Pipeline.encode_prompt``): the CLAP text tower gives one
pooled, projected embedding ``(batch, 1, d_clap)``; the Flan-T5 encoder gives a token sequence
``(batch, tokens, d_t5)`` with its attention mask; ``AudioLDM2ProjectionModel`` projects both to
the GPT-2 width, wraps each in learned SOS/EOS vectors and concatenates them; GPT-2 then
generates ``max_new_tokens`` (8) further hidden states autoregressively ("language of audio",
Sec. 3 of the paper). The UNet (``AudioLDM2UNet2DConditionModel``) cross-attends to the generated
states (``encoder_hidden_states``) and to the T5 sequence (``encoder_hidden_states_1`` with its
mask). Latents, VAE, mel front end and HiFi-GAN vocoder are AudioLDM's
(:class:`~dreamsampler.engine.audioldm.ClapLDMFamily`), so SDEdit works unchanged.

transformers 5 broke the pipeline's GPT-2 generation (diffusers issue 12630: ``GPT2Model`` has no
``_update_model_kwargs_for_generation``); :func:`generate_language_model` is the same loop
without it: feed the sequence, append the last hidden state, extend the attention mask by one.

LoRA: the UNet class has no adapter methods; :class:`AudioLDM2UNet` adds diffusers'
``PeftAdapterMixin`` (``add_adapter``, ``set_adapters``, ``save_lora_adapter``,
``load_lora_adapter``), so concepts load and train through the shared code. Textual inversion
covers both tokenizers (:attr:`AudioLDM2Family.text_towers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.loaders.peft import PeftAdapterMixin
from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel

from dreamsampler.engine.audioldm import ClapLDMFamily
from dreamsampler.engine.family_base import PROMPT_CACHE_SIZE

#: GPT-2 steps of AudioLDM 2 (``sequence_gen_length`` of the original configs).
DEFAULT_MAX_NEW_TOKENS = 8


class AudioLDM2UNet(AudioLDM2UNet2DConditionModel, PeftAdapterMixin):
    """``AudioLDM2UNet2DConditionModel`` with diffusers' peft adapter methods (LoRA).

    Same weights, config and forward pass; :class:`AudioLDM2Family` re-classes a loaded UNet to
    it (no copy).
    """


@dataclass(frozen=True)
class AudioLDM2Conditioning:
    """The UNet's text conditioning for a batch.

    Attributes:
        generated: GPT-2's generated hidden states ``(batch, max_new_tokens, d_gpt2)``
            (cross-attention 1).
        t5: Flan-T5 encoder states ``(batch, tokens, d_t5)`` (cross-attention 2).
        t5_mask: their attention mask ``(batch, tokens)`` (1 = attend).
    """

    generated: torch.Tensor
    t5: torch.Tensor
    t5_mask: torch.Tensor

    @property
    def shape(self) -> torch.Size:
        return self.generated.shape

    def __getitem__(self, index: int | slice | torch.Tensor) -> AudioLDM2Conditioning:
        """Rows of the batch (an int keeps the batch axis)."""
        index = slice(index, index + 1) if isinstance(index, int) else index
        return AudioLDM2Conditioning(self.generated[index], self.t5[index], self.t5_mask[index])

    @staticmethod
    def cat(parts: list[AudioLDM2Conditioning]) -> AudioLDM2Conditioning:
        return AudioLDM2Conditioning(
            torch.cat([p.generated for p in parts]),
            torch.cat([p.t5 for p in parts]),
            torch.cat([p.t5_mask for p in parts]),
        )


def generate_language_model(
    language_model: torch.nn.Module,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> torch.Tensor:
    """GPT-2 continuation in hidden-state space (``AudioLDM2Pipeline.generate_language_model``).

    Each step runs the whole sequence ``(batch, length, d)`` (no key/value cache: the GPT-2 of
    AudioLDM 2 sees ~100 positions for 8 steps), appends the last position's final hidden state
    and extends the attention mask by a column of ones, as transformers' generation utilities do.

    Args:
        language_model: a ``GPT2Model``.
        inputs_embeds: projected text ``(batch, length, d)``.
        attention_mask: ``(batch, length)``, 1 = attend; ``None`` for all ones.
        max_new_tokens: states to generate.

    Returns:
        The generated states ``(batch, max_new_tokens, d)``.
    """
    mask = attention_mask
    for _ in range(max_new_tokens):
        output = language_model(
            inputs_embeds=inputs_embeds, attention_mask=mask, output_hidden_states=True,
            return_dict=True,
        )
        inputs_embeds = torch.cat([inputs_embeds, output.hidden_states[-1][:, -1:, :]], dim=1)
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
    return inputs_embeds[:, -max_new_tokens:, :]


class AudioLDM2Family(ClapLDMFamily):
    """AudioLDM 2: CLAP + Flan-T5 → projection → GPT-2 → cross-attention UNet.

    Conditioning is an :class:`AudioLDM2Conditioning`. Prompts of one batch (the negative and
    the positive prompt under guidance) have their T5 sequences padded to the longest of the
    batch, as the pipeline pads the negative prompt to the prompt's length; the cache keys a
    prompt by that length. Equal to the pipeline whenever the negative prompt is not longer than
    the prompt (the pipeline truncates a longer one to the prompt's length; here nothing is cut).
    """

    name = "audioldm2"
    pipeline_class = "AudioLDM2Pipeline"
    component_keys = (
        "tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2", "projection_model",
        "language_model", "vae", "unet", "vocoder", "scheduler",
    )
    text_towers = (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2"))

    def __init__(
        self, model_id: str, components: dict[str, Any], device: torch.device, dtype: torch.dtype
    ) -> None:
        unet = components["unet"]
        if not isinstance(unet, PeftAdapterMixin):
            unet.__class__ = AudioLDM2UNet  # adds methods only: same state, same forward
        super().__init__(model_id, components, device, dtype)
        config = components["language_model"].config
        self.max_new_tokens = int(getattr(config, "max_new_tokens", None)
                                  or DEFAULT_MAX_NEW_TOKENS)

    # -- text -------------------------------------------------------------------------------------

    def _t5_length(self, prompt: str) -> int:
        tok = self.components["tokenizer_2"]
        ids = tok(prompt, truncation=True, max_length=tok.model_max_length).input_ids
        return len(ids)

    def _encode_text(self, prompts: list[str], t5_length: int | None = None) -> Any:
        """Conditioning for ``prompts`` (placeholders already expanded), one forward pass each
        through CLAP, T5, the projection and GPT-2 (batched passes round differently)."""
        length = t5_length or max(self._t5_length(p) for p in prompts)
        return AudioLDM2Conditioning.cat([self._encode_one(p, length) for p in prompts])

    def _encode_one(self, prompt: str, t5_length: int) -> AudioLDM2Conditioning:
        c = self.components
        clap_ids, clap_mask = self._tokenize([prompt])
        clap = c["text_encoder"].get_text_features(clap_ids, attention_mask=clap_mask)
        clap = clap.pooler_output if hasattr(clap, "pooler_output") else clap
        clap = clap[:, None, :]
        clap_mask = clap_mask.new_ones((1, 1))
        tok = c["tokenizer_2"](
            [prompt], padding="max_length", max_length=t5_length, truncation=True,
            return_tensors="pt",
        )
        t5_ids, t5_mask = tok.input_ids.to(self.device), tok.attention_mask.to(self.device)
        t5 = c["text_encoder_2"](t5_ids, attention_mask=t5_mask)[0]
        projected = c["projection_model"](
            hidden_states=clap, hidden_states_1=t5, attention_mask=clap_mask,
            attention_mask_1=t5_mask,
        )
        generated = generate_language_model(
            c["language_model"], projected.hidden_states, projected.attention_mask,
            self.max_new_tokens,
        )
        return AudioLDM2Conditioning(generated, t5, t5_mask)

    def encode_text(self, prompts: list[str]) -> Any:  # type: ignore[override]
        """Uncached :class:`AudioLDM2Conditioning` for ``prompts`` (T5 padded to the longest)."""
        return self._encode_text([self.expand_prompt(p) for p in prompts])

    def encode_prompt(self, prompts: list[str]) -> Any:  # type: ignore[override]
        """Cached :class:`AudioLDM2Conditioning` (see the class docstring for the padding)."""
        expanded = {p: self.expand_prompt(p) for p in prompts}
        length = max(self._t5_length(e) for e in expanded.values())
        keys = [f"{length}\x00{p}" for p in prompts]
        for prompt, key in zip(prompts, keys, strict=True):
            if key in self._prompt_cache:
                continue
            with torch.no_grad():
                self._prompt_cache[key] = self._encode_one(expanded[prompt], length)
            if len(self._prompt_cache) > PROMPT_CACHE_SIZE:
                self._prompt_cache.popitem(last=False)
        for key in keys:
            self._prompt_cache.move_to_end(key)
        return AudioLDM2Conditioning.cat([self._prompt_cache[k] for k in keys])

    # -- denoiser ---------------------------------------------------------------------------------

    def denoise(  # type: ignore[override]
        self, latents: torch.Tensor, timestep: torch.Tensor, conditioning: AudioLDM2Conditioning
    ) -> torch.Tensor:
        return self.components["unet"](
            latents,
            timestep,
            encoder_hidden_states=conditioning.generated.to(latents.dtype),
            encoder_hidden_states_1=conditioning.t5.to(latents.dtype),
            encoder_attention_mask_1=conditioning.t5_mask,
            return_dict=False,
        )[0]
