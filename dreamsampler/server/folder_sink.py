"""The DAW-folder sink: each clip lands atomically as a WAV with a JSON generation record beside it.

A file is written under a hidden temporary name in the same folder, flushed and fsynced, then
renamed into place (``os.replace``), so a DAW watching the folder never sees half a file. The
sidecar ``<name>.json`` is in place before the WAV appears. Files are made readable by other users
(0644): a DAW may run as another user.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import soundfile as sf

from dreamsampler.engine.audio_io import resample
from dreamsampler.engine.request import GenerationResult


class SinkError(OSError):
    """The clip cannot be delivered; the message names the folder or file and the reason."""


def slugify(text: str, max_length: int = 40) -> str:
    """A safe, readable file-name fragment: lowercase ASCII letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "clip"


def atomic_write(path: Path, write: Callable[[BinaryIO], None], mode: int = 0o644) -> None:
    """Write ``path`` via a hidden ``.<name>.part`` file in the same folder, fsync, rename.

    Raises:
        OSError: the folder is not writable or the disk is full; no partial file is left.
    """
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class FolderSink:
    """Writes clips into the DAW folder.

    Args:
        directory: the output folder (created if missing).
        subtype: ``PCM_24``, ``FLOAT`` (32-bit float) or ``PCM_16``.
        sample_rate: Hz to write at (resampled with soxr); ``None`` keeps the model's rate.
    """

    def __init__(
        self, directory: Path, subtype: str = "PCM_24", sample_rate: int | None = None
    ) -> None:
        self.directory = Path(directory)
        self.subtype = subtype
        self.sample_rate = sample_rate
        self._lock = threading.Lock()

    def check_writable(self) -> None:
        """Create the folder if needed and check that files can be written in it.

        Raises:
            SinkError: naming the folder and the reason.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"output folder {self.directory}: {exc.strerror}") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise SinkError(f"output folder {self.directory}: not writable")

    def _reserve(self, stem: str) -> Path:
        """A path for ``stem`` that does not exist yet (``-2``, ``-3``… appended if needed)."""
        candidate = self.directory / f"{stem}.wav"
        n = 2
        while candidate.exists() or candidate.with_suffix(".json").exists():
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
    ) -> Path:
        """Write the clip and its sidecar; return the WAV's path once it is in place.

        Args:
            result: audio ``(channels, samples)`` with its generation record.
            name: file-name stem (made safe); default ``<time>_<prompt-slug>_<seed>``.
            extra: more fields for the sidecar record (e.g. job id, tempo).

        Raises:
            SinkError: the folder is not writable or the write failed; nothing is left behind.
        """
        self.check_writable()
        rate = self.sample_rate or result.sample_rate
        audio = resample(result.audio, result.sample_rate, rate).clip(-1.0, 1.0)
        record = {**result.record, **(extra or {}), "file_sample_rate": rate,
                  "file_subtype": self.subtype}
        with self._lock:
            path = self._reserve(self.clip_stem(result, name))
            sidecar = path.with_suffix(".json")
            try:
                record["file"] = path.name
                atomic_write(
                    sidecar, lambda fh: fh.write(json.dumps(record, indent=2).encode() + b"\n")
                )
                atomic_write(
                    path,
                    lambda fh: sf.write(fh, audio.T, rate, subtype=self.subtype, format="WAV"),
                )
            except OSError as exc:
                sidecar.unlink(missing_ok=True)
                raise SinkError(f"{path}: cannot write ({exc.strerror or exc})") from None
        return path
