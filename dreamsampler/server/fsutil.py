"""Small file-system helpers shared by the live-performance modules.

Files that a DAW (possibly running as another user) reads must appear complete and readable:
they are written to a temporary file in the same folder, flushed and fsync'ed, moved into place
with :func:`os.replace` (atomic on POSIX) and given mode 0644.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

FILE_MODE = 0o644


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Write a file atomically: temp file in the same folder, fsync, ``os.replace``, chmod 0644.

    Args:
        path: destination file; its folder must exist.
        write: called with the open binary temp file; writes the content.

    Returns:
        The destination path.

    Raises:
        OSError: the folder does not exist or is not writable (the temp file is removed).
        Exception: whatever ``write`` raises (the temp file is removed, the destination untouched).
    """
    dest = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable; not fatal where unsupported
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return dest


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically (see :func:`atomic_write`); returns the destination path."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data))
