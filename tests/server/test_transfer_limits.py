"""/transfer over real UDP with large inputs: refused above limits.max_input_mb, else cheap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import RunningServer, make_config, run_server
from tests.engine.test_audio_io import sparse_wav


@pytest.fixture
def small_limit_server(tmp_path: Path) -> Iterator[RunningServer]:
    yield from run_server(make_config(tmp_path, **{"limits.max_input_mb": 16}))


def test_oversized_input_is_refused_and_a_long_one_is_read_in_part(
        small_limit_server: RunningServer) -> None:
    sparse_wav(small_limit_server.input_dir / "big.wav", 64 * 2**20)
    long = sparse_wav(small_limit_server.input_dir / "long.wav", 12 * 2**20)
    with small_limit_server.client() as c:
        refused = c.request("/transfer", "big.wav", "x", "strength", 0.5)[-1]
        assert refused.address == "/fail" and refused.args[0] == "/transfer"
        assert "big.wav: is 64.0 MiB, over the input limit of 16 MiB" in refused.args[1]
        done = c.request("/transfer", "long.wav", "x", "strength", 0.5, "duration", 0.5)[-1]
        assert done.address == "/done", done
        assert sf.info(done.args[2]).duration == pytest.approx(0.5)
    assert sf.info(long).duration > 70
