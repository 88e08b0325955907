"""Fit generated audio to whole bars, and write loop WAVs a DAW recognises (acid + smpl chunks).

Audio arrays are ``(channels, samples)`` float. A loop of ``bars`` bars at ``bpm`` BPM lasts
exactly ``round(bars * beats_per_bar * 60 / bpm * sr)`` samples with its downbeat at sample 0.

Loop metadata: libsndfile *reads* ``acid`` chunks (SFC_GET_LOOP_INFO) but has no command to
write them; it does write arbitrary chunks with ``sf_set_chunk`` and the ``smpl`` chunk with
SFC_SET_INSTRUMENT. soundfile does not expose either, so :func:`write_loop_wav` calls them on the
very libsndfile that soundfile loaded, through cffi. The tempo and bar count also go in the file
name (:func:`loop_file_name`) for DAWs that ignore the chunks.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dreamsampler.fsutil import atomic_write_path

"""Mode of written loop files (readable by a DAW running as another user)."""

FitMode = Literal["cut", "stretch"]


def bar_samples(bars: float, bpm: float, sr: int, beats_per_bar: int = 4) -> int:
    """Length of ``bars`` bars at ``bpm`` BPM in samples at ``sr`` Hz (rounded).

    Raises:
        ValueError: non-positive bars, tempo, sample rate or beats per bar.
    """
    if bars <= 0 or bpm <= 0 or sr <= 0 or beats_per_bar < 1:
        raise ValueError(f"bars, bpm, sr and beats_per_bar must be positive (got {bars}, "
                         f"{bpm}, {sr}, {beats_per_bar})")
    return round(bars * beats_per_bar * 60.0 / bpm * sr)


def _as_2d(audio: np.ndarray) -> np.ndarray:
    arr = np.asarray(audio)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"audio must be (channels, samples) with samples > 0, got {arr.shape}")
    return arr.astype(np.float32, copy=False)


def fade(audio: np.ndarray, sr: int, fade_in_ms: float = 0.0, fade_out_ms: float = 0.0
         ) -> np.ndarray:
    """A copy of ``audio`` (channels, samples) with linear fades of the given lengths in ms."""
    out = np.array(audio, dtype=np.float32, copy=True)
    n = out.shape[-1]
    n_in = min(n, round(fade_in_ms * sr / 1000.0))
    n_out = min(n, round(fade_out_ms * sr / 1000.0))
    if n_in > 0:
        out[..., :n_in] *= np.linspace(0.0, 1.0, n_in, endpoint=False, dtype=np.float32)
    if n_out > 0:
        out[..., n - n_out:] *= np.linspace(1.0, 0.0, n_out, dtype=np.float32)
    return out


def trim_to_first_onset(audio: np.ndarray, sr: int, top_db: float = 40.0) -> np.ndarray:
    """Drop leading silence up to the first onset.

    The first onset is found with ``librosa.onset.onset_detect`` (backtracked; without onsets,
    ``librosa.effects.trim``), then refined to the first sample within ``top_db`` dB of the
    peak in the following 1024 samples. Returns ``(channels, samples)`` float32.
    """
    import librosa

    arr = _as_2d(audio)
    mono = librosa.to_mono(arr)
    onsets = librosa.onset.onset_detect(y=mono, sr=sr, units="samples", backtrack=True)
    if len(onsets):
        start = int(onsets[0])
    else:
        _, (start, _) = librosa.effects.trim(mono, top_db=top_db)
    # onsets are frame-accurate (hop 512): move to the first sample above the threshold
    threshold = float(np.max(np.abs(mono))) * 10.0 ** (-top_db / 20.0)
    above = np.flatnonzero(np.abs(mono[start:start + 1024]) > threshold)
    if len(above):
        start += int(above[0])
    start = min(start, arr.shape[1] - 1)
    return arr[:, start:]


def fit_to_bars(
    audio: np.ndarray,
    sr: int,
    bars: float,
    bpm: float,
    mode: FitMode = "cut",
    beats_per_bar: int = 4,
    fade_out_ms: float = 10.0,
    trim_leading: bool = False,
) -> np.ndarray:
    """Make ``audio`` exactly ``bar_samples(bars, bpm, sr, beats_per_bar)`` samples long.

    Args:
        audio: ``(channels, samples)`` (or mono 1-D) float audio at ``sr`` Hz.
        sr: sample rate in Hz.
        bars: number of bars; ``bpm``: tempo in BPM.
        mode: ``cut``: truncate (or pad with silence) and fade out over ``fade_out_ms`` ms at
            the end of the material; ``stretch``: time-stretch with
            ``librosa.effects.time_stretch`` (phase vocoder, pitch kept) to the target length.
        beats_per_bar: beats per bar.
        fade_out_ms: fade at the cut (``cut``) or at the very end (``stretch``), in ms.
        trim_leading: first drop leading silence up to the first onset, so the downbeat is at
            sample 0.

    Returns:
        float32 ``(channels, target)`` array.

    Raises:
        ValueError: bad shape, unknown mode or non-positive bars/bpm/sr.
    """
    arr = _as_2d(audio)
    target = bar_samples(bars, bpm, sr, beats_per_bar)
    if trim_leading:
        arr = trim_to_first_onset(arr, sr)
    n = arr.shape[1]
    if mode == "cut":
        if n >= target:
            return fade(arr[:, :target], sr, fade_out_ms=fade_out_ms)
        out = np.zeros((arr.shape[0], target), dtype=np.float32)
        out[:, :n] = fade(arr, sr, fade_out_ms=fade_out_ms)
        return out
    if mode == "stretch":
        import librosa

        stretched = arr if n == target else librosa.effects.time_stretch(arr, rate=n / target)
        fitted = librosa.util.fix_length(stretched, size=target, axis=-1)
        return fade(fitted, sr, fade_out_ms=min(fade_out_ms, 2.0))
    raise ValueError(f"mode must be 'cut' or 'stretch', got {mode!r}")


# ---- loop WAV with acid + smpl chunks -------------------------------------------------------

SFC_GET_INSTRUMENT = 0x10D0
SFC_SET_INSTRUMENT = 0x10D1
SFC_GET_LOOP_INFO = 0x10E0
SF_LOOP_FORWARD = 801
_INSTRUMENT_SIZE = 4 + 6 + 2 + 4 + 16 * 16  # SF_INSTRUMENT: 272 bytes
_LOOP_INFO_SIZE = 2 + 2 + 4 + 4 + 4 + 4 + 6 * 4  # SF_LOOP_INFO: 44 bytes

_CDEF = """
typedef struct SNDFILE_tag SNDFILE;
typedef struct { char id[64]; unsigned id_size; unsigned datalen; void *data; } SF_CHUNK_INFO;
int sf_set_chunk(SNDFILE *sndfile, const SF_CHUNK_INFO *chunk_info);
int sf_command(SNDFILE *sndfile, int command, void *data, int datasize);
"""
_lib: Any = None


def _sndfile() -> tuple[Any, Any]:
    """(cffi FFI, lib) bound to the libsndfile that soundfile loaded."""
    global _lib
    import cffi
    import soundfile

    if _lib is None:
        match = re.search(r"'(.+)'", repr(soundfile._snd))
        if match is None:  # pragma: no cover - soundfile internals changed
            raise RuntimeError("cannot locate soundfile's libsndfile")
        ffi = cffi.FFI()
        ffi.cdef(_CDEF)
        _lib = (ffi, ffi.dlopen(match.group(1)))
    return _lib


def _handle(f: Any) -> Any:
    import soundfile

    ffi, _ = _sndfile()
    return ffi.cast("SNDFILE *", int(soundfile._ffi.cast("uintptr_t", f._file)))


@dataclass(frozen=True)
class LoopInfo:
    """Loop metadata read back from a WAV: tempo (BPM), beats, meter and the smpl loop.

    ``loop_start`` and ``loop_end`` are sample frames, both inclusive as the RIFF ``smpl`` chunk
    stores them: a loop over a whole file of ``n`` frames is ``(0, n - 1)``.
    """

    bpm: float
    beats: int
    time_sig: tuple[int, int]
    loop_start: int | None
    loop_end: int | None


def loop_file_name(stem: str, bpm: float, bars: int, ext: str = ".wav") -> str:
    """A file name carrying tempo and length, e.g. ``lofi_120bpm_4bars.wav``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "clip"
    return f"{safe}_{bpm:g}bpm_{bars}bars{ext}"


def write_loop_wav(
    path: str | os.PathLike[str],
    audio: np.ndarray,
    sr: int,
    bpm: float,
    bars: int,
    beats_per_bar: int = 4,
    root_note: int = 60,
    subtype: str = "PCM_24",
) -> Path:
    """Write a loop WAV with ``acid`` (tempo, beats, meter) and ``smpl`` (forward loop over the
    whole file: start 0, end ``samples - 1``, the last sample, as the RIFF spec's inclusive
    ``dwEnd``) chunks, atomically (:func:`dreamsampler.fsutil.atomic_write_path`).

    Args:
        path: destination ``.wav``.
        audio: ``(channels, samples)`` float audio in [-1, 1].
        sr: sample rate (Hz); ``bpm``: tempo (BPM); ``bars``: loop length in bars.
        root_note: MIDI root key stored in both chunks.
        subtype: libsndfile subtype (``PCM_16``, ``PCM_24``, ``FLOAT``).

    Raises:
        ValueError: bad audio shape or tempo. RuntimeError: libsndfile refused a chunk.
        soundfile.LibsndfileError / OSError: the file cannot be written.
    """
    import soundfile

    arr = _as_2d(audio)
    if bpm <= 0 or bars < 1:
        raise ValueError(f"bpm must be > 0 and bars >= 1 (got {bpm}, {bars})")
    ffi, lib = _sndfile()

    def write(tmp: Path) -> None:
        with soundfile.SoundFile(tmp, "w", sr, arr.shape[0], subtype, format="WAV") as f:
            h = _handle(f)
            # acid: flags (0x02 root note valid; not one-shot = loop), root note, 2 unknown
            # fields, beats, meter denominator, meter numerator, tempo (float BPM)
            acid = struct.pack("<IHHfIHHf", 0x02, root_note, 0x8000, 0.0, bars * beats_per_bar,
                               4, beats_per_bar, float(bpm))
            buf = ffi.new("char[]", acid)
            info = ffi.new("SF_CHUNK_INFO *")
            info.id = b"acid"
            info.id_size = 4
            info.datalen = len(acid)
            info.data = buf
            if lib.sf_set_chunk(h, info) != 0:
                raise RuntimeError("libsndfile refused the acid chunk")
            inst = struct.pack("<i6b2xi", 0, root_note, 0, 1, 127, 0, 127, 1)
            # SF_INSTRUMENT's loop end is exclusive: libsndfile writes end - 1 into smpl, whose
            # dwEnd is the last sample of the loop (inclusive), so frames - 1 lands in the file
            inst += struct.pack("<iIII", SF_LOOP_FORWARD, 0, arr.shape[1], 0)
            inst += bytes(_INSTRUMENT_SIZE - len(inst))
            ibuf = ffi.new("char[]", inst)
            if lib.sf_command(h, SFC_SET_INSTRUMENT, ibuf, _INSTRUMENT_SIZE) != 1:
                raise RuntimeError("libsndfile refused the smpl (instrument) chunk")
            f.write(arr.T)
            f.flush()

    return atomic_write_path(path, write)


def read_loop_info(path: str | os.PathLike[str]) -> LoopInfo | None:
    """Tempo/beats (acid) and loop points (smpl, inclusive) of a WAV via libsndfile; None
    without acid."""
    import soundfile

    ffi, lib = _sndfile()
    with soundfile.SoundFile(path) as f:
        h = _handle(f)
        buf = ffi.new("char[]", _LOOP_INFO_SIZE)
        if lib.sf_command(h, SFC_GET_LOOP_INFO, buf, _LOOP_INFO_SIZE) != 1:
            return None
        num, den, _mode, beats, bpm, _root = struct.unpack("<hhiifi", bytes(ffi.buffer(buf))[:20])
        ibuf = ffi.new("char[]", _INSTRUMENT_SIZE)
        start = end = None
        if lib.sf_command(h, SFC_GET_INSTRUMENT, ibuf, _INSTRUMENT_SIZE) == 1:
            raw = bytes(ffi.buffer(ibuf))
            (count,) = struct.unpack("<i", raw[12:16])
            if count > 0:
                _m, start, end_exclusive, _c = struct.unpack("<iIII", raw[16:32])
                end = end_exclusive - 1  # libsndfile reads smpl's inclusive end as end + 1
    return LoopInfo(float(bpm), int(beats), (int(num), int(den)), start, end)
