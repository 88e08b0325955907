"""TempoClock: validation, beat grid, MIDI clock following (synthetic timestamps), Link."""

from __future__ import annotations

import sys

import mido
import numpy as np
import pytest

from dreamsampler.server.clock import (
    LinkUnavailableError,
    TempoClock,
    TempoError,
    bars_to_seconds,
    validate_bpm,
)


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("bad", [20, 0, -5, 1000, float("nan"), "fast"])
def test_tempo_validation(bad: object) -> None:
    with pytest.raises(TempoError, match="BPM"):
        validate_bpm(bad)  # type: ignore[arg-type]


def test_tempo_limits_and_bars() -> None:
    assert validate_bpm(20.01) == 20.01 and validate_bpm(999) == 999.0
    assert bars_to_seconds(4, 120) == pytest.approx(8.0)
    assert bars_to_seconds(1, 90, beats_per_bar=3) == pytest.approx(2.0)
    with pytest.raises(TempoError):
        bars_to_seconds(1, 10)


def test_grid_and_boundaries() -> None:
    now = FakeTime()
    clock = TempoClock(120.0, time_fn=now)
    assert clock.beat_at(100.0) == 0.0 and clock.beat_at(101.0) == pytest.approx(2.0)
    assert clock.next_boundary(4, 100.1) == pytest.approx(102.0)
    assert clock.next_boundary(4, 102.0) == pytest.approx(102.0)
    assert clock.next_boundary(1, 100.6) == pytest.approx(101.0)
    assert clock.next_boundary(0, 100.6) == 100.6
    assert clock.next_bar(100.1) == pytest.approx(102.0)
    now.t = 101.0
    clock.set_tempo(60.0)  # beat 2 at t=101 stays
    assert clock.beat_at(101.0) == pytest.approx(2.0)
    assert clock.beat_at(102.0) == pytest.approx(3.0)
    assert clock.time_at_beat(4.0) == pytest.approx(103.0)
    with pytest.raises(TempoError):
        clock.set_tempo(1500)
    assert clock.bpm == 60.0


def _ticks(clock: TempoClock, t0: float, bpm: float, n: int, jitter: float = 0.0,
           seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    interval = 60.0 / bpm / 24
    t = t0
    for i in range(n):
        t = t0 + i * interval + rng.uniform(0, jitter)
        clock.handle_midi(mido.Message("clock"), t)
    return t


def test_midi_clock_tempo_with_jack_like_jitter() -> None:
    clock = TempoClock(90.0, time_fn=FakeTime())
    clock.handle_midi(mido.Message("start"), 0.0)
    # arrivals quantized/jittered by up to one 5.33 ms JACK period
    last = _ticks(clock, 0.01, 120.0, 96, jitter=256 / 48000)
    assert clock.bpm == pytest.approx(120.0, abs=0.5)
    assert clock.source == "midi" and clock.running
    assert clock.beat_at(last) == pytest.approx(95 / 24, abs=0.02)


def test_midi_start_stop_continue_songpos() -> None:
    clock = TempoClock(120.0, time_fn=FakeTime())
    clock.handle_midi(mido.Message("start"), 0.0)
    assert not clock.running  # waits for the first pulse
    _ticks(clock, 0.0, 120.0, 48)  # 2 beats at 120 BPM
    clock.handle_midi(mido.Message("stop"), 1.0)
    frozen = clock.beat_at(1.0)
    assert frozen == pytest.approx(2.0, abs=0.05) and clock.beat_at(5.0) == frozen
    assert clock.next_boundary(4, 5.0) == 5.0  # no grid while stopped
    _ticks(clock, 2.0, 120.0, 10)  # clock keeps running while stopped: position stays
    assert clock.beat_at(3.0) == frozen
    clock.handle_midi(mido.Message("songpos", pos=16), 3.0)  # 16 sixteenths = beat 4
    assert clock.beat_at(3.0) == pytest.approx(4.0)
    clock.handle_midi(mido.Message("continue"), 3.1)
    _ticks(clock, 3.2, 120.0, 25)
    assert clock.beat_at(3.2) == pytest.approx(4.0, abs=0.02)
    assert clock.running
    assert not clock.handle_midi(mido.Message("note_on"), 4.0)


def test_link_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aalink", None)
    with pytest.raises(LinkUnavailableError, match=r"dreamsampler\[link\]"):
        TempoClock().enable_link(loop=object())


def test_link_when_installed() -> None:
    pytest.importorskip("aalink")
    import asyncio

    async def main() -> None:
        clock = TempoClock(133.0)
        clock.enable_link()
        assert clock.source == "link"
        assert clock.bpm == pytest.approx(133.0)
        clock.disable_link()

    asyncio.run(main())
