"""Atomic file writes, shared by the engine (concepts, loop WAVs) and the server (clips, presets).

Files that a DAW (possibly running as another user) reads must appear complete and readable:
they are written to a temporary file in the same folder, flushed and fsync'ed, moved into place
with :func:`os.replace` (atomic on POSIX) and given mode 0644.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

FILE_MODE = 0o644


def atomic_write_path(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Let ``write(tmp)`` create a temporary file beside ``path``, then move it into place.

    The temporary file (``.<name>.<pid>.part`` in the destination folder) is fsync'ed, given mode
    0644 and renamed over ``path``; the rename is made durable by fsyncing the folder. For writers
    that need a file name (libsndfile, safetensors); see :func:`atomic_write` for a file object.

    Returns:
        The destination path.

    Raises:
        OSError: the folder does not exist or is not writable (the temp file is removed).
        Exception: whatever ``write`` raises (the temp file is removed, the destination untouched).
    """
    dest = Path(path)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename durable; not fatal where unsupported
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return dest


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Write a file atomically; ``write`` gets the open binary temporary file.

    See :func:`atomic_write_path` for the guarantees and errors.
    """

    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            write(fh)

    return atomic_write_path(path, to_file)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically (see :func:`atomic_write`); returns the destination path."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data))
