"""The DAW-folder sink: each clip lands atomically as a WAV with a JSON generation record beside it.

A file is written under a hidden temporary name in the same folder, flushed and fsynced, then
renamed into place (``os.replace``), so a DAW watching the folder never sees half a file. The
sidecar ``<name>.json`` is in place before the WAV appears. Files are made readable by other users
(0644): a DAW may run as another user.

Any failure while writing (a full disk makes libsndfile's short write an ``AssertionError``) removes
what was written and raises :class:`SinkError`. After a disk-full failure the sink knows how many
bytes a second of audio takes; :meth:`FolderSink.check` then sizes each new job by its own length
and refuses the ones that cannot fit ("disk full"), and ``/status`` reports the folder as not
writable while not even one second fits. At start-up :meth:`FolderSink.clean_orphans` removes
what a crash between the sidecar and the WAV left behind (a sidecar without its WAV, temporary
``.part`` files of dead processes).

Stems (issue 19: ``/separate``, the ``stems`` option) land as a folder ``<name>.stems/`` next to
the clips, holding ``<name>.<source>.wav`` for every source and ``<name>.stems.json`` (the model,
its version, the input or clip); the folder is written under a hidden temporary name
(``.<name>.stems.<pid>.part``) and renamed into place whole, so a DAW never sees half of it.

A clip made to a bar length (:class:`LoopSpec`) is written as a loop: exactly that many bars at
the file's sample rate, tempo and bars in the file name (``..._120bpm_4bars.wav``) and ``acid`` +
``smpl`` chunks that DAWs read as tempo and loop points.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from dreamsampler.engine.audio_io import resample
from dreamsampler.engine.bars import bar_samples, fit_to_bars, loop_file_name, write_loop_wav
from dreamsampler.engine.level import (
    NonFiniteAudioError,
    check_finite,
    normalize_overs,
    peak_dbfs,
)
from dreamsampler.engine.request import GenerationResult
from dreamsampler.engine.stems import SeparationRequest
from dreamsampler.fsutil import FILE_MODE, atomic_write, atomic_write_path
from dreamsampler.server.delivery import FOLDER, Clip, Delivery, LoopSpec, stems_folder
from dreamsampler.server.sinks import SinkError

__all__ = ["FolderSink", "LoopSpec", "SinkError", "slugify"]

log = logging.getLogger(__name__)

INODES_PER_CLIP = 3
"""Files a clip needs at once: the WAV, its generation record and one temporary file."""

_BYTES_PER_SAMPLE = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}
_HEADER_BYTES = 65536
"""Room for the WAV header, its chunks and the sidecar, bytes."""
_PART = re.compile(r"^\..+\.(\d+)\.part$")


def slugify(text: str, max_length: int = 40) -> str:
    """A safe, readable file-name fragment: lowercase ASCII letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "clip"


class FolderSink:
    """Writes clips into the DAW folder (the :class:`~dreamsampler.server.sinks.Sink` ``folder``).

    Args:
        directory: the output folder (created if missing).
        subtype: ``PCM_24``, ``FLOAT`` (32-bit float) or ``PCM_16``.
        sample_rate: Hz to write at (resampled with soxr); ``None`` or ``"native"`` keeps the
            model's rate.
    """

    def __init__(
        self, directory: Path, subtype: str = "PCM_24", sample_rate: int | str | None = None
    ) -> None:
        self.directory = Path(directory)
        self.subtype = subtype
        self.sample_rate = sample_rate
        self._lock = threading.Lock()
        #: bytes per second of audio of the last clip that did not fit (0 after a success): the
        #: disk-full guard sizes each new job by its own length with it
        self.bytes_per_second = 0.0

    name = FOLDER
    required = True
    """A job whose clip cannot be written fails."""

    async def start(self) -> None:
        """Check the folder is writable and remove a crash's leftovers (:meth:`clean_orphans`).

        Raises:
            SinkError: the folder cannot be written.
        """
        self.check_writable()
        await asyncio.to_thread(self.clean_orphans)

    def check(self, job: Delivery | None = None) -> None:
        """:meth:`check_writable` for ``job``'s clip (``None``: a one-second clip; a clip with
        stems counts as five clips: itself and four sources)."""
        request = None if job is None else job.request
        seconds = getattr(request, "duration", None) or 1.0
        if getattr(request, "stems", 0) or isinstance(request, SeparationRequest):
            seconds *= 5
        self.check_writable(seconds)

    def status(self) -> dict[str, Any]:
        """``output_dir`` and ``output_writable`` (a one-second clip can be written)."""
        try:
            self.check()
            writable = True
        except SinkError:
            writable = False
        return {"output_dir": str(self.directory), "output_writable": writable}

    def offer(self, clip: Clip) -> None:
        """Nothing to keep: the folder holds every clip it was given."""

    async def deliver(self, clip: Clip) -> Path:
        """Write the clip (:meth:`write`, off the event loop); returns the WAV's path — for a
        ``/separate`` job, the stems folder's (:meth:`write_separation`).

        Raises:
            SinkError: see :meth:`write`.
        """
        extra = {"job_id": clip.job_id, **clip.job.extra}
        if isinstance(clip.job.request, SeparationRequest):
            return await asyncio.to_thread(self.write_separation, clip.result, clip.job.name,
                                           extra)
        return await asyncio.to_thread(self.write, clip.result, clip.job.name, extra,
                                       clip.job.loop, clip.take)

    async def stop(self) -> None:
        """Nothing sounds here."""

    async def close(self) -> None:
        """Nothing to release."""

    def check_writable(self, seconds: float = 0.0) -> None:
        """Create the folder if needed and check that files can be written in it and, after a
        disk-full failure, that a clip of ``seconds`` fits; a file system with fewer free inodes
        than :data:`INODES_PER_CLIP` is not writable either.

        Raises:
            SinkError: naming the folder and the reason.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"output folder {self.directory}: {exc.strerror}") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise SinkError(f"output folder {self.directory}: not writable")
        inodes = self.free_inodes()
        if inodes is not None and inodes < INODES_PER_CLIP:
            raise SinkError(f"output folder {self.directory}: no free inodes ({inodes} left; "
                            f"a clip needs {INODES_PER_CLIP}: the WAV, its record, a temporary)")
        if self.bytes_per_second and seconds > 0:
            needed = int(seconds * self.bytes_per_second) + _HEADER_BYTES
            free = self.free_bytes()
            if free is not None and free < needed:
                raise SinkError(f"output folder {self.directory}: disk full ({free} bytes free, "
                                f"a {seconds:g} s clip needs about {needed})")

    def free_inodes(self) -> int | None:
        """Inodes (files) that may still be created in the output folder's file system; None
        if unknown or unlimited (file systems that report no inode total, such as btrfs)."""
        try:
            st = os.statvfs(self.directory)
        except (OSError, AttributeError):
            return None
        return int(st.f_favail) if st.f_files > 0 else None

    def free_bytes(self) -> int | None:
        """Bytes free for this process in the output folder's file system (None if unknown)."""
        try:
            return shutil.disk_usage(self.directory).free
        except OSError:
            return None

    def clean_orphans(self) -> list[Path]:
        """Remove what an interrupted write left: sidecars (``.json`` generation records naming
        a ``file``) whose WAV is missing, and temporary ``.<name>.<pid>.part`` files of
        processes that are gone. Returns the removed paths (nothing else is touched)."""
        removed: list[Path] = []
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            return removed
        for path in entries:
            try:
                part = _PART.match(path.name)
                if part is not None and path.is_dir():  # a stems folder being written
                    if not _alive(int(part.group(1))):
                        shutil.rmtree(path)
                        removed.append(path)
                elif part is not None and path.is_file():
                    if not _alive(int(part.group(1))):
                        path.unlink()
                        removed.append(path)
                elif path.suffix == ".json" and path.is_file() and \
                        not path.with_suffix(".wav").exists() and _is_record(path):
                    path.unlink()
                    removed.append(path)
            except OSError as exc:
                log.warning("cannot clean %s: %s", path, exc)
        if removed:
            log.warning("output folder: removed %d leftovers of interrupted writes: %s",
                        len(removed), ", ".join(p.name for p in removed[:10]))
        return removed

    def _reserve(self, stem: str) -> Path:
        """A path for ``stem`` that does not exist yet (``-2``, ``-3``… appended if needed),
        nor its sidecar, nor its stems folder."""
        candidate = self.directory / f"{stem}.wav"
        n = 2
        while candidate.exists() or candidate.with_suffix(".json").exists() or \
                stems_folder(candidate).exists():
            candidate = self.directory / f"{stem}-{n}.wav"
            n += 1
        return candidate

    def clip_stem(self, result: GenerationResult, name: str | None) -> str:
        if name:
            return slugify(name, 80)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        prompt = str(result.record.get("prompt", ""))
        return f"{stamp}_{slugify(prompt)}_{result.record.get('seed', 0)}"

    def write(
        self,
        result: GenerationResult,
        name: str | None = None,
        extra: dict[str, Any] | None = None,
        loop: LoopSpec | None = None,
        take: int = 0,
    ) -> Path:
        """Write the clip and its sidecar; return the WAV's path once it is in place.

        Args:
            result: audio ``(channels, samples)`` with its generation record.
            name: file-name stem (made safe); default ``<time>_<prompt-slug>_<seed>``.
            extra: more fields for the sidecar record (e.g. job id, tempo).
            loop: write a loop WAV of exactly ``loop.bars`` bars at ``loop.bpm`` (file name
                ``<stem>_<bpm>bpm_<bars>bars.wav``, acid + smpl chunks, sidecar ``bpm``/``bars``).
            take: 1-based take of a job with several (``_take<k>`` ends the stem); 0: none.

        The file is written at the sink's ``sample_rate`` (soxr; ``None``/``"native"`` keeps the
        model's rate); a loop stays exactly ``loop.bars`` bars long at that rate. Audio with a
        NaN or infinite sample is refused; if resampling lifts the peak above 0 dBFS the clip is
        scaled to -1 dBFS (:func:`dreamsampler.engine.level.normalize_overs`). The sidecar
        records ``model_sample_rate`` and ``file_sample_rate`` (Hz), ``file_gain_db`` (0.0 when
        no gain was needed) and ``file_peak_dbfs``.

        Raises:
            SinkError: non-finite audio, the folder is not writable or the write failed;
                nothing is left behind.
        """
        try:
            check_finite(result.audio, "the clip")
        except NonFiniteAudioError as exc:
            raise SinkError(f"{self.directory}: {exc}") from None
        self.check_writable()
        rate = self.sample_rate if isinstance(self.sample_rate, int) else result.sample_rate
        audio = resample(result.audio, result.sample_rate, rate)
        record = {**result.record, **(extra or {}), "model_sample_rate": result.sample_rate,
                  "file_sample_rate": rate, "file_subtype": self.subtype}
        stem = self.clip_stem(result, name)
        if take:
            stem = f"{stem}_take{take}"
        if loop is not None:
            target = bar_samples(loop.bars, loop.bpm, rate, loop.beats_per_bar)
            if audio.shape[-1] != target:  # resampling moved the length by a sample or two
                audio = fit_to_bars(audio, rate, loop.bars, loop.bpm,
                                    beats_per_bar=loop.beats_per_bar, fade_out_ms=0.0)
            record.update(bpm=loop.bpm, bars=loop.bars, beats_per_bar=loop.beats_per_bar)
            stem = loop_file_name(stem, loop.bpm, loop.bars, ext="")
        audio, file_gain_db = normalize_overs(audio)
        peak = peak_dbfs(audio)
        record.update(file_gain_db=round(file_gain_db, 3),
                      file_peak_dbfs=round(peak, 3) if math.isfinite(peak) else None)
        with self._lock:
            path = self._reserve(stem)
            sidecar = path.with_suffix(".json")
            folder: Path | None = None
            try:
                if result.stems is not None:
                    folder = stems_folder(path)
                    stems_record = {**result.record.get("stems", {}), "clip": path.name,
                                    **(extra or {})}
                    self._write_stems(folder, path.stem, result.stems, result.sample_rate,
                                      stems_record, loop)
                    record["stems"] = {**result.record.get("stems", {}), "folder": folder.name}
                record["file"] = path.name
                atomic_write(
                    sidecar, lambda fh: fh.write(json.dumps(record, indent=2).encode() + b"\n")
                )
                if loop is not None:
                    write_loop_wav(path, audio, rate, loop.bpm, loop.bars, loop.beats_per_bar,
                                   subtype=self.subtype)
                else:
                    # by name: libsndfile's own I/O (a file object's short write would print
                    # a traceback from soundfile's cffi callback before the error)
                    atomic_write_path(
                        path,
                        lambda tmp: sf.write(tmp, audio.T, rate, subtype=self.subtype,
                                             format="WAV"),
                    )
            except Exception as exc:  # soundfile: AssertionError on a short write (disk full)
                sidecar.unlink(missing_ok=True)
                path.unlink(missing_ok=True)
                if folder is not None and folder.is_dir():
                    shutil.rmtree(folder, ignore_errors=True)
                per_second = rate * audio.shape[0] * _BYTES_PER_SAMPLE.get(self.subtype, 4)
                needed = int(audio.shape[-1] / rate * per_second) + _HEADER_BYTES
                free = self.free_bytes()
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                if free is not None and free < needed:
                    reason = f"disk full: {free} bytes free, about {needed} needed"
                    self.bytes_per_second = per_second
                raise SinkError(f"{path}: cannot write ({reason})") from None
            self.bytes_per_second = 0.0
        return path


    # -- stems (issue 19) ----------------------------------------------------------------------

    def write_separation(self, result: GenerationResult, name: str | None = None,
                         extra: dict[str, Any] | None = None) -> Path:
        """Write a ``/separate`` result: the stems folder only; returns its path.

        Args:
            result: ``stems`` (source → ``(channels, samples)``) at ``result.sample_rate``;
                ``record["input"]`` names the input.
            name: stem of the folder and file names; default: the input file's name.

        Raises:
            SinkError: non-finite audio, the folder is not writable or a write failed; nothing
                is left behind.
        """
        if result.stems is None:
            raise SinkError(f"{self.directory}: the separation returned no stems")
        self.check_writable()
        base = slugify(name or Path(str(result.record.get("input", "clip"))).stem, 80)
        record = {**result.record.get("stems", {}), "input": result.record.get("input"),
                  "seed": result.record.get("seed"), "engine": result.record.get("engine"),
                  "elapsed_s": result.record.get("elapsed_s"), **(extra or {})}
        with self._lock:
            folder = self.directory / f"{base}.stems"
            n = 2
            while folder.exists():
                folder = self.directory / f"{base}-{n}.stems"
                n += 1
            self._write_stems(folder, folder.name.removesuffix(".stems"), result.stems,
                              result.sample_rate, record)
        return folder

    def _write_stems(self, folder: Path, base: str, stems: dict[str, np.ndarray],
                     sample_rate: int, record: dict[str, Any], loop: LoopSpec | None = None
                     ) -> None:
        """Write ``<folder>/<base>.<source>.wav`` for every stem and ``<base>.stems.json`` into
        a hidden temporary folder, then rename it to ``folder`` (which must not exist).

        Raises:
            SinkError: non-finite stems, or a write failed (the temporary folder is removed).
        """
        rate = self.sample_rate if isinstance(self.sample_rate, int) else sample_rate
        try:
            stacked = np.stack([resample(np.asarray(s, dtype=np.float32), sample_rate, rate)
                                for s in stems.values()])
            check_finite(stacked, "the stems")
        except NonFiniteAudioError as exc:
            raise SinkError(f"{folder}: {exc}") from None
        except ValueError as exc:  # stems of different shapes
            raise SinkError(f"{folder}: {exc}") from None
        if loop is not None:
            target = bar_samples(loop.bars, loop.bpm, rate, loop.beats_per_bar)
            if stacked.shape[-1] != target:
                stacked = np.stack([fit_to_bars(s, rate, loop.bars, loop.bpm,
                                                beats_per_bar=loop.beats_per_bar,
                                                fade_out_ms=0.0) for s in stacked])
        stacked, gain_db = normalize_overs(stacked)  # one gain: the stems still sum to the mix
        files = {source: f"{base}.{source}.wav" for source in stems}
        sidecar = {**record, "files": files, "file_sample_rate": rate,
                   "stems_sample_rate": sample_rate, "file_subtype": self.subtype,
                   "file_gain_db": round(gain_db, 3), "samples": int(stacked.shape[-1])}
        tmp = folder.with_name(f".{folder.name}.{os.getpid()}.part")
        try:
            tmp.mkdir()
            for file, audio in zip(files.values(), stacked, strict=True):
                target_path = tmp / file
                if loop is not None:
                    write_loop_wav(target_path, audio, rate, loop.bpm, loop.bars,
                                   loop.beats_per_bar, subtype=self.subtype)
                else:
                    sf.write(target_path, audio.T, rate, subtype=self.subtype, format="WAV")
                _fsync(target_path)
                os.chmod(target_path, FILE_MODE)
            json_path = tmp / f"{base}.stems.json"
            json_path.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
            _fsync(json_path)
            os.chmod(json_path, FILE_MODE)
            os.chmod(tmp, 0o755)
            os.rename(tmp, folder)
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise SinkError(f"{folder}: cannot write the stems ({reason})") from None


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a ``.part`` file of a live writer is left alone)."""
    if pid == os.getpid():
        return False  # ours: nothing is being written at start-up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _is_record(path: Path) -> bool:
    """Whether ``path`` is one of our sidecars (a JSON object naming its WAV in ``file``)."""
    with contextlib.suppress(OSError, ValueError):
        if path.stat().st_size > 1 << 20:
            return False
        record = json.loads(path.read_text(encoding="utf-8"))
        return isinstance(record, dict) and record.get("file") == path.with_suffix(".wav").name
    return False
