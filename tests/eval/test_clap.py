"""CLAP via transformers: tiny random models, LAION key mapping, LAION front end."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tokenizers.pre_tokenizers import ByteLevel
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, RobertaTokenizer

from dreamsampler.eval.clap import (
    LAION_MEL,
    ClapCheckpointError,
    ClapEmbedder,
    infer_laion_config,
    laion_log_mel,
    laion_to_hf_state_dict,
    laion_waveform,
    load_clap,
    load_laion_checkpoint,
)

# ---------------------------------------------------------------------------------------------
# fixtures: tiny tokenizer and model


def make_tokenizer() -> RobertaTokenizer:
    tokens = ["<s>", "<pad>", "</s>", "<unk>", *sorted(ByteLevel.alphabet()), "<mask>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=77)


TINY_AUDIO = dict(
    patch_embeds_hidden_size=8,
    depths=[2, 2],
    num_attention_heads=[1, 2],
    window_size=8,
    spec_size=256,
    num_mel_bins=64,
    hidden_size=16,
)


def tiny_text(vocab: int) -> dict[str, object]:
    return dict(
        vocab_size=vocab,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=80,
        layer_norm_eps=1e-5,
    )


def tiny_config(vocab: int = 261) -> ClapConfig:
    return ClapConfig(text_config=tiny_text(vocab), audio_config=TINY_AUDIO, projection_dim=8)


@pytest.fixture(scope="module")
def embedder() -> ClapEmbedder:
    torch.manual_seed(0)
    tok = make_tokenizer()
    return ClapEmbedder(ClapModel(tiny_config(len(tok))), tok)


# ---------------------------------------------------------------------------------------------
# LAION state dict, listed from LAION-CLAP's module structure (htsat.py, model.py, RoBERTa),
# independently of the library's renaming rules.


def laion_shapes(
    embed_dim: int,
    depths: list[int],
    heads: list[int],
    window: int,
    text_hidden: int,
    text_layers: int,
    text_inter: int,
    vocab: int,
    max_pos: int,
    proj: int,
    mels: int = 64,
    spec_size: int = 256,
    patch: int = 4,
    classes: int = 527,
) -> dict[str, tuple[int, ...]]:
    s: dict[str, tuple[int, ...]] = {}
    a = "audio_branch."
    s[a + "spectrogram_extractor.stft.conv_real.weight"] = (513, 1, 1024)
    s[a + "spectrogram_extractor.stft.conv_imag.weight"] = (513, 1, 1024)
    s[a + "logmel_extractor.melW"] = (513, mels)
    for n in ("weight", "bias", "running_mean", "running_var"):
        s[a + f"bn0.{n}"] = (mels,)
    s[a + "bn0.num_batches_tracked"] = ()
    s[a + "patch_embed.proj.weight"] = (embed_dim, 1, patch, patch)
    s[a + "patch_embed.proj.bias"] = (embed_dim,)
    s[a + "patch_embed.norm.weight"] = (embed_dim,)
    s[a + "patch_embed.norm.bias"] = (embed_dim,)
    res = spec_size // patch
    for i, (depth, h) in enumerate(zip(depths, heads, strict=True)):
        dim = embed_dim * 2**i
        w = min(window, res)
        for j in range(depth):
            b = a + f"layers.{i}.blocks.{j}."
            for norm in ("norm1", "norm2"):
                s[b + f"{norm}.weight"] = s[b + f"{norm}.bias"] = (dim,)
            s[b + "attn.relative_position_bias_table"] = ((2 * w - 1) ** 2, h)
            s[b + "attn.relative_position_index"] = (w * w, w * w)
            s[b + "attn.qkv.weight"] = (3 * dim, dim)
            s[b + "attn.qkv.bias"] = (3 * dim,)
            s[b + "attn.proj.weight"] = (dim, dim)
            s[b + "attn.proj.bias"] = (dim,)
            s[b + "mlp.fc1.weight"] = (4 * dim, dim)
            s[b + "mlp.fc1.bias"] = (4 * dim,)
            s[b + "mlp.fc2.weight"] = (dim, 4 * dim)
            s[b + "mlp.fc2.bias"] = (dim,)
            if j % 2 == 1 and res > window:  # shifted windows keep a precomputed mask
                s[b + "attn_mask"] = ((res // w) ** 2, w * w, w * w)
        if i < len(depths) - 1:
            d = a + f"layers.{i}.downsample."
            s[d + "reduction.weight"] = (2 * dim, 4 * dim)
            s[d + "norm.weight"] = s[d + "norm.bias"] = (4 * dim,)
            res //= 2
    feats = embed_dim * 2 ** (len(depths) - 1)
    s[a + "norm.weight"] = s[a + "norm.bias"] = (feats,)
    sf = spec_size // 2 ** (len(depths) - 1) // patch // (spec_size // mels)
    s[a + "tscam_conv.weight"] = (classes, feats, max(sf, 1), 3)
    s[a + "tscam_conv.bias"] = (classes,)
    s[a + "head.weight"] = (classes, classes)
    s[a + "head.bias"] = (classes,)
    t = "text_branch."
    s[t + "embeddings.position_ids"] = (1, max_pos)
    s[t + "embeddings.word_embeddings.weight"] = (vocab, text_hidden)
    s[t + "embeddings.position_embeddings.weight"] = (max_pos, text_hidden)
    s[t + "embeddings.token_type_embeddings.weight"] = (1, text_hidden)
    s[t + "embeddings.LayerNorm.weight"] = s[t + "embeddings.LayerNorm.bias"] = (text_hidden,)
    for k in range(text_layers):
        L = t + f"encoder.layer.{k}."
        for q in ("query", "key", "value"):
            s[L + f"attention.self.{q}.weight"] = (text_hidden, text_hidden)
            s[L + f"attention.self.{q}.bias"] = (text_hidden,)
        s[L + "attention.output.dense.weight"] = (text_hidden, text_hidden)
        s[L + "attention.output.dense.bias"] = (text_hidden,)
        s[L + "attention.output.LayerNorm.weight"] = (text_hidden,)
        s[L + "attention.output.LayerNorm.bias"] = (text_hidden,)
        s[L + "intermediate.dense.weight"] = (text_inter, text_hidden)
        s[L + "intermediate.dense.bias"] = (text_inter,)
        s[L + "output.dense.weight"] = (text_hidden, text_inter)
        s[L + "output.dense.bias"] = (text_hidden,)
        s[L + "output.LayerNorm.weight"] = s[L + "output.LayerNorm.bias"] = (text_hidden,)
    s[t + "pooler.dense.weight"] = (text_hidden, text_hidden)
    s[t + "pooler.dense.bias"] = (text_hidden,)
    for branch, width in (("text", text_hidden), ("audio", feats)):
        s[f"{branch}_projection.0.weight"] = (proj, width)
        s[f"{branch}_projection.0.bias"] = (proj,)
        s[f"{branch}_projection.2.weight"] = (proj, proj)
        s[f"{branch}_projection.2.bias"] = (proj,)
        for idx in (0, 3):  # MLPLayers([proj] * 3): Linear, ReLU, Dropout, Linear
            s[f"{branch}_transform.sequential.{idx}.weight"] = (proj, proj)
            s[f"{branch}_transform.sequential.{idx}.bias"] = (proj,)
    s["logit_scale_a"] = s["logit_scale_t"] = ()
    return s


HTSAT_BASE_ROBERTA = dict(
    embed_dim=128,
    depths=[2, 2, 12, 2],
    heads=[4, 8, 16, 32],
    window=8,
    text_hidden=768,
    text_layers=12,
    text_inter=3072,
    vocab=50265,
    max_pos=514,
    proj=512,
)
TINY_LAION = dict(
    embed_dim=8,
    depths=[2, 2],
    heads=[1, 2],
    window=8,
    text_hidden=16,
    text_layers=2,
    text_inter=32,
    vocab=261,
    max_pos=80,
    proj=8,
)


def meta_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for k, v in shapes.items():
        if k.endswith(("relative_position_index", "num_batches_tracked", "position_ids")):
            out[k] = torch.zeros(v, dtype=torch.long)
        else:
            out[k] = 0.05 * torch.randn(v, generator=g)
    return out


# ---------------------------------------------------------------------------------------------
# embedder


def test_embed_shapes_and_norms(embedder: ClapEmbedder) -> None:
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(16000), 0.1 * rng.standard_normal(40000)]
    emb = embedder.embed_audio(clips, sr=16000)
    assert emb.shape == (2, 8) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    txt = embedder.embed_text(["a recording of a sks guitar", "jazz", "x"])
    assert txt.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(txt[0], txt[1])
    # deterministic: same inputs, same outputs; stereo is averaged to mono
    np.testing.assert_allclose(embedder.embed_audio(clips, sr=16000), emb, atol=1e-6)
    stereo = np.stack([clips[0], clips[0]])
    np.testing.assert_allclose(embedder.embed_audio([stereo], sr=16000)[0], emb[0], atol=1e-6)


def test_features_match_manual_forward(embedder: ClapEmbedder) -> None:
    clip = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000) * 0.3
    mel = laion_log_mel(laion_waveform(clip))
    with torch.no_grad():
        out = embedder.model.get_audio_features(
            input_features=torch.from_numpy(mel)[None, None],
            is_longer=torch.zeros(1, 1, dtype=torch.bool),
        )
    ref = torch.nn.functional.normalize(out.pooler_output, dim=-1).numpy()
    np.testing.assert_allclose(embedder.embed_audio([clip], 48000), ref, atol=1e-5)


def test_save_and_load_offline(embedder: ClapEmbedder, tmp_path: Path) -> None:
    embedder.save_pretrained(tmp_path / "clap")
    loaded = load_clap(tmp_path / "clap")
    clip = 0.2 * np.random.default_rng(1).standard_normal(24000)
    np.testing.assert_allclose(
        loaded.embed_audio([clip], 16000), embedder.embed_audio([clip], 16000), atol=1e-5
    )
    np.testing.assert_allclose(
        loaded.embed_text(["bells"]), embedder.embed_text(["bells"]), atol=1e-5
    )
    assert loaded.params == LAION_MEL


def test_no_tokenizer_is_a_clear_error(embedder: ClapEmbedder) -> None:
    audio_only = ClapEmbedder(embedder.model, None)
    with pytest.raises(RuntimeError, match="tokenizer"):
        audio_only.embed_text(["x"])


# ---------------------------------------------------------------------------------------------
# LAION front end


def test_laion_waveform_repeatpad_trunc_quantize() -> None:
    x = np.linspace(-0.5, 0.5, 200000)
    w = laion_waveform(x, quantize=False)
    assert w.shape == (480000,)
    np.testing.assert_allclose(w[:200000], x, atol=1e-7)
    np.testing.assert_allclose(w[200000:400000], x, atol=1e-7)  # floor(480000/200000) = 2 copies
    assert np.all(w[400000:] == 0)
    q = laion_waveform(np.array([0.123456789, -2.0]), quantize=True)
    assert q[0] == pytest.approx(int(0.123456789 * 32767) / 32767, abs=1e-7)
    assert q[1] == pytest.approx(-1.0)
    long = np.arange(500000, dtype=np.float64) / 1e6
    crop = laion_waveform(long, quantize=False, rng=np.random.default_rng(3))
    start = round(crop[0] * 1e6)
    np.testing.assert_allclose(crop, long[start : start + 480000], atol=1e-7)


def test_laion_mel_shape_and_peak_band() -> None:
    sr = 48000
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(sr * 10) / sr)
    mel = laion_log_mel(laion_waveform(tone))
    assert mel.shape == (LAION_MEL.frames, 64) == (1001, 64)
    import librosa

    centers = librosa.mel_frequencies(n_mels=66, fmin=50, fmax=14000)[1:-1]
    assert abs(centers[int(mel[500].argmax())] - 1000) < 150


def test_laion_mel_equals_hf_extractor_with_laion_fmin() -> None:
    # transformers' extractor computes the same log-mel once its fmin is LAION's 50 Hz
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(48000 * 3)).astype(np.float32)
    fe = ClapFeatureExtractor(frequency_min=50, frequency_max=14000)
    hf = fe(y, sampling_rate=48000, truncation="rand_trunc", return_tensors="np")
    ours = laion_log_mel(laion_waveform(y, quantize=False))
    np.testing.assert_allclose(hf["input_features"][0, 0], ours, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# LAION checkpoint mapping


def test_full_size_laion_keys_all_map() -> None:
    shapes = laion_shapes(**HTSAT_BASE_ROBERTA)  # type: ignore[arg-type]
    state = meta_state(shapes)
    cfg = infer_laion_config(state)
    audio: Any = cfg.audio_config
    text: Any = cfg.text_config
    assert list(audio.depths) == [2, 2, 12, 2]
    assert list(audio.num_attention_heads) == [4, 8, 16, 32]
    assert audio.hidden_size == 1024 and audio.window_size == 8
    assert text.num_attention_heads == 12 and cfg.projection_dim == 512
    with torch.device("meta"):
        model = ClapModel(cfg)
    target = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mapped, ignored, unknown = laion_to_hf_state_dict({"module." + k: v for k, v in state.items()})
    assert unknown == []
    derived = [k for k in target if k.endswith(("position_ids", "token_type_ids"))]
    assert set(mapped) | set(derived) == set(target)
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: target[k] for k in mapped}
    assert all(
        k.startswith(("audio_branch.spectrogram", "audio_branch.logmel", "audio_branch.tscam"))
        or k.startswith(("audio_branch.head", "text_transform", "audio_transform"))
        or k.endswith(("attn_mask", "position_ids"))
        for k in ignored
    )
    n_params = sum(math.prod(s) for k, s in target.items() if k in mapped)
    assert n_params > 150_000_000  # full size: HTSAT-base + RoBERTa-base


def _save_laion(tmp_path: Path, state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / "music_tiny.pt"
    torch.save({"epoch": 15, "state_dict": {"module." + k: v for k, v in state.items()}}, path)
    return path


def test_tiny_laion_checkpoint_loads_with_values(tmp_path: Path) -> None:
    state = random_state(laion_shapes(**TINY_LAION))  # type: ignore[arg-type]
    path = _save_laion(tmp_path, state)
    model = load_laion_checkpoint(path)
    sd = model.state_dict()
    qkv = state["audio_branch.layers.1.blocks.1.attn.qkv.weight"]
    blk = "audio_model.audio_encoder.layers.1.blocks.1."
    torch.testing.assert_close(sd[blk + "attention.self.query.weight"], qkv[:16])
    torch.testing.assert_close(sd[blk + "attention.self.key.weight"], qkv[16:32])
    torch.testing.assert_close(sd[blk + "attention.self.value.weight"], qkv[32:])
    torch.testing.assert_close(
        sd[blk + "attention.output.dense.weight"],
        state["audio_branch.layers.1.blocks.1.attn.proj.weight"],
    )
    torch.testing.assert_close(
        sd["audio_model.audio_encoder.batch_norm.running_var"],
        state["audio_branch.bn0.running_var"],
    )
    torch.testing.assert_close(
        sd["text_projection.linear2.weight"], state["text_projection.2.weight"]
    )
    torch.testing.assert_close(
        sd["text_model.encoder.layer.1.output.LayerNorm.bias"],
        state["text_branch.encoder.layer.1.output.LayerNorm.bias"],
    )
    torch.testing.assert_close(sd["logit_scale_t"], state["logit_scale_t"])
    # end to end through load_clap with an explicit tokenizer
    emb = load_clap(path, tokenizer=make_tokenizer())
    assert emb.embed_text(["a sks drum loop"]).shape == (1, 8)
    assert emb.embed_audio([np.ones(4800) * 0.1], 48000).shape == (1, 8)


def test_laion_missing_key_names_file_and_arch(tmp_path: Path) -> None:
    state = random_state(laion_shapes(**TINY_LAION))  # type: ignore[arg-type]
    del state["audio_branch.layers.0.blocks.1.mlp.fc2.weight"]
    path = _save_laion(tmp_path, state)
    with pytest.raises(ClapCheckpointError) as err:
        load_laion_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and "HTSAT" in msg and "RoBERTa" in msg
    assert "layers.0.blocks.1.output.dense.weight" in msg


def test_laion_wrong_architecture(tmp_path: Path) -> None:
    state = random_state(laion_shapes(**TINY_LAION))  # type: ignore[arg-type]
    pann = {k: v for k, v in state.items() if not k.startswith("audio_branch.")}
    pann["audio_branch.conv_block1.conv1.weight"] = torch.zeros(64, 1, 3, 3)
    with pytest.raises(ClapCheckpointError, match="not HTSAT"):
        load_laion_checkpoint(_save_laion(tmp_path, pann))
    # shapes that do not fit the given config
    path = _save_laion(tmp_path, state)
    wrong = ClapConfig(
        text_config=tiny_text(261), audio_config={**TINY_AUDIO, "depths": [2, 3]}, projection_dim=8
    )
    with pytest.raises(ClapCheckpointError, match="missing"):
        load_laion_checkpoint(path, config=wrong)
    with pytest.raises(FileNotFoundError):
        load_laion_checkpoint(tmp_path / "nope.pt")
