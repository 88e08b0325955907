"""A small RIFF/WAVE chunk reader for tests: an independent check of what libsndfile wrote.

Reads the chunks with ``struct`` straight from the file bytes (RIFF spec: ``smpl`` as in the
Multimedia Programming Interface and Data Specifications 1.0; ``acid`` as Sony ACID writes it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RiffWave:
    """The chunks of one WAV file and what the tests need from them."""

    chunks: dict[str, bytes]
    channels: int
    sample_rate: int
    frames: int

    def smpl_loops(self) -> list[tuple[int, int, int]]:
        """``(type, start, end)`` of every ``smpl`` loop; ``end`` as stored (inclusive)."""
        raw = self.chunks["smpl"]
        count = struct.unpack_from("<I", raw, 28)[0]
        loops = []
        for i in range(count):
            _ident, kind, start, end, _frac, _plays = struct.unpack_from("<6I", raw, 36 + 24 * i)
            loops.append((kind, start, end))
        return loops

    def smpl_unity_note(self) -> int:
        return struct.unpack_from("<I", self.chunks["smpl"], 12)[0]

    def acid(self) -> dict[str, float]:
        """``flags``, ``root_note``, ``beats``, ``meter`` (num, den) and ``tempo`` (BPM)."""
        flags, root, _u1, _u2, beats, den, num, tempo = struct.unpack(
            "<IHHfIHHf", self.chunks["acid"][:24])
        return {"flags": flags, "root_note": root, "beats": beats, "meter": (num, den),
                "tempo": tempo}


def read_riff_wave(path: Path | str) -> RiffWave:
    """Parse a RIFF/WAVE file's top-level chunks.

    Raises:
        ValueError: not a RIFF/WAVE file or a chunk runs past the end.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    chunks: dict[str, bytes] = {}
    pos = 12
    while pos + 8 <= len(data):
        ident, size = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8:pos + 8 + size]
        if len(body) != size:
            raise ValueError(f"{path}: chunk {ident!r} runs past the end")
        chunks[ident.decode("ascii")] = body
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    _fmt, channels, rate, _bps, block_align = struct.unpack_from("<HHIIH", chunks["fmt "])
    return RiffWave(chunks, channels, rate, len(chunks["data"]) // block_align)
