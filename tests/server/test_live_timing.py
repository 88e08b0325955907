"""Live timing, sample-exact, on a simulated clock (tests/server/sim.py).

The real device sink, mixer, tempo clock and jam edge run on a simulated audio stream, so every
start, crossfade and loop can be checked to the sample: a quantized clip starts on the bar's
sample, consecutive jam clips leave zero silent samples between them. What a real device adds
(JACK jitter, xruns) is measured, not asserted, by ``bench/bench_live_timing.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import mido
import numpy as np
import pytest

from dreamsampler.engine.request import GenerationRequest, GenerationResult
from dreamsampler.server.clock import PPQN, TempoClock
from dreamsampler.server.delivery import DEVICE, Clip, Delivery
from dreamsampler.server.device_sink import JAM_CROSSFADE_S, LEAD_S, DeviceSink
from dreamsampler.server.mixer import DEFAULT_FADE_S
from tests.server.sim import SimDevice

SR = 48000
FADE = round(DEFAULT_FADE_S * SR)
XFADE = round(JAM_CROSSFADE_S * SR)


def _setup(bpm: float) -> tuple[SimDevice, TempoClock, DeviceSink]:
    sim = SimDevice(sr=SR)
    clock = TempoClock(bpm, time_fn=sim.now)  # beat 0 at the simulated start
    device = DeviceSink("sim", clock, mixer_factory=sim.mixer)
    device.open()
    return sim, clock, device


def _clip(job_id: int, audio: np.ndarray, *, jam: bool = False,
          quantum: float | None = None) -> Clip:
    job = Delivery(GenerationRequest("timing"), sinks=(DEVICE,), quantum=quantum, jam=jam)
    return Clip(job_id, GenerationResult(audio[None, :].astype(np.float32), SR), job)


def _faded(level: float, n: int) -> np.ndarray:
    """What the mixer plays for a one-shot DC clip: 5 ms linear fade in and out."""
    out = np.full(n, level, dtype=np.float64)
    out[:FADE] *= np.arange(FADE) / FADE
    out[-FADE:] *= np.linspace(1.0, 0.0, FADE)
    return out


@pytest.mark.parametrize(("bpm", "quantum", "request_at"), [
    (120.0, 4.0, 0.3),    # next bar: 2 s after beat 0
    (97.0, 4.0, 2.6),     # a bar that is no whole number of samples (118762.9)
    (97.0, 1.0, 2.6),     # next beat
    (133.0, 4.0, 1.8045),  # the bar falls inside the lead time: the one after
])
def test_quantized_clip_starts_on_the_exact_sample(bpm: float, quantum: float,
                                                   request_at: float) -> None:
    sim, clock, device = _setup(bpm)
    sim.advance(request_at)
    n = 4800
    played = asyncio.run(device.deliver(_clip(1, np.full(n, 0.5), quantum=quantum)))
    grid = quantum * 60.0 / bpm
    expected_at = sim.t0 + np.ceil((request_at + LEAD_S) / grid) * grid
    assert played.clock_time == pytest.approx(expected_at, abs=1e-9)
    assert clock.beat_at(played.clock_time) == pytest.approx(
        round(clock.beat_at(played.clock_time) / quantum) * quantum, abs=1e-9)
    sim.advance_to(played.clock_time + 0.2)
    out = sim.output[:, 0]
    k = sim.sample_at(expected_at)
    assert np.count_nonzero(out[:k]) == 0
    np.testing.assert_allclose(out[k:k + n], _faded(0.5, n), atol=1e-6)
    assert np.count_nonzero(out[k + n:]) == 0
    assert device.mixer is not None and device.mixer.late_starts == 0


def test_quantum_zero_starts_at_the_next_block() -> None:
    sim, _, device = _setup(120.0)
    sim.advance(0.5)
    asyncio.run(device.deliver(_clip(1, np.full(1000, 0.25), quantum=0.0)))
    first = sim.rendered  # the first block rendered after the request
    sim.advance(0.1)
    out = sim.output[:, 0]
    assert np.count_nonzero(out[:first]) == 0
    np.testing.assert_allclose(out[first:first + 1000], _faded(0.25, 1000), atol=1e-6)


def test_a_start_time_already_past_starts_at_the_next_block_and_is_counted() -> None:
    sim = SimDevice(sr=SR)
    mixer = sim.mixer()
    mixer.start()
    sim.advance(0.5)
    mixer.play(np.full(1000, 0.25, np.float32), SR, mixer.time() - 0.1)  # 100 ms too late
    first = sim.rendered
    sim.advance(0.1)
    out = sim.output[:, 0]
    assert mixer.late_starts == 1
    assert np.count_nonzero(out[:first]) == 0
    np.testing.assert_allclose(out[first:first + 1000], _faded(0.25, 1000), atol=1e-6)


def test_tempo_change_moves_the_grid_sample_exactly() -> None:
    """/tempo keeps the beat position: the next bar is where the new tempo puts it."""
    sim, clock, device = _setup(120.0)
    sim.advance(1.0)  # beat 2
    clock.set_tempo(90.0)  # 2 beats left to the bar at 90 BPM: 4/3 s
    sim.advance(0.25)
    played = asyncio.run(device.deliver(_clip(1, np.full(2400, 0.5), quantum=4.0)))
    bar = sim.t0 + 1.0 + 2 * 60.0 / 90.0
    assert played.clock_time == pytest.approx(bar, abs=1e-9)
    sim.advance_to(bar + 0.1)
    out = sim.output[:, 0]
    k = sim.sample_at(bar)
    assert np.count_nonzero(out[:k]) == 0 and out[k + FADE] == pytest.approx(0.5)


def _jam_expected(levels: list[float], starts: list[int], stop: int, stop_fade: int,
                  total: int) -> np.ndarray:
    """The signal jam should render: DC loops, each crossfading into the next at its start."""
    out = np.zeros(total)
    bounds = [*starts[1:], stop]
    for i, (level, start, end) in enumerate(zip(levels, starts, bounds, strict=True)):
        fade_in = FADE if i == 0 else XFADE
        fade_out = stop_fade if i == len(levels) - 1 else XFADE
        pos = np.arange(start, total)
        env = np.minimum(1.0, (pos - start) / fade_in)
        env *= np.clip(1.0 - (pos - end) / fade_out, 0.0, 1.0)
        out[start:] += level * env
    return out


def test_jam_clips_follow_each_other_with_zero_gap_samples() -> None:
    """Three one-bar jam clips, the third one bar late (the second loops meanwhile): each
    starts on its bar's sample, crossfades from the previous one, and no sample in between is
    quieter than the quietest clip."""
    sim, clock, device = _setup(120.0)
    bar = clock.bar_seconds()
    levels = [0.2, 0.4, 0.6]
    extra_wait = [0.0, 0.0, bar]  # clip 2 arrives after clip 1 has looped once
    played = []
    for n, level in enumerate(levels):
        sim.advance(extra_wait[n])
        p = asyncio.run(device.deliver(_clip(n, np.full(round(bar * SR), level), jam=True)))
        played.append(p)
        sim.advance_to(p.clock_time)  # jam waits until the clip sounds
    assert [p.clock_time - sim.t0 for p in played] == pytest.approx([2.0, 4.0, 8.0], abs=1e-9)
    sim.advance(bar / 2)
    device.stop_jam(fade_s=0.01)
    stop = sim.rendered  # the fade starts in the next block rendered
    sim.advance(0.1)
    out = sim.output[:, 0]
    starts = [sim.sample_at(p.clock_time) for p in played]
    assert np.diff(starts).tolist() == [96000, 192000]  # whole bars, to the sample
    expected = _jam_expected(levels, starts, stop, round(0.01 * SR), len(out))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    gap_samples = int(np.count_nonzero(out[starts[0] + FADE:stop] < min(levels) - 1e-6))
    assert gap_samples == 0
    assert device.mixer is not None and device.mixer.playing == 0


def test_midi_clock_at_exact_pulse_times_gives_exactly_the_tempo() -> None:
    """Pulses exactly 1/24 beat apart at 120 BPM, then at 93.5 BPM: the tempo is exact once the
    fit window holds only the new pulses, and each pulse is exactly on its beat."""
    sim = SimDevice()
    clock = TempoClock(90.0, time_fn=sim.now, smoothing_ticks=48)
    clock.handle_midi(mido.Message("start"), sim.t)
    t = sim.t + 0.01
    for bpm, pulses in ((120.0, 96), (93.5, 48)):
        for _ in range(pulses):
            clock.handle_midi(mido.Message("clock"), t)
            last = t
            t += 60.0 / bpm / PPQN
        assert clock.bpm == pytest.approx(bpm, rel=1e-9)
    assert clock.source == "midi" and clock.running
    assert clock.beat_at(last) == pytest.approx((96 + 48 - 1) / PPQN, abs=1e-9)
    to_bar = 8 - (96 + 48 - 1) / PPQN  # beats from the last pulse to the second bar line
    assert clock.next_bar(last) == pytest.approx(last + to_bar * 60.0 / 93.5, abs=1e-9)


def test_jam_edge_schedules_clips_on_consecutive_bars(tmp_path: Path) -> None:
    """The jam edge through the real service and tiny engine, on the simulated device: every
    clip starts exactly one bar after the previous one, none late, and the device never falls
    silent between the first clip's fade-in and the stop."""
    from dreamsampler.engine.jobs import LocalEngine
    from dreamsampler.server.delivery import FOLDER
    from dreamsampler.server.folder_sink import FolderSink
    from dreamsampler.server.jam import Jam
    from dreamsampler.server.service import Service
    from tests.conftest import make_config

    config = make_config(tmp_path, **{"defaults.num_inference_steps": 2, "live.tempo": 240.0,
                                      "live.audio_out": "sim"})
    sim = SimDevice(sr=SR)
    engine = LocalEngine(model_id="tiny", device="cpu", queue_size=4,
                         concepts_dir=config.concepts_dir)

    async def main() -> tuple[Jam, int]:
        service = Service(config, engine, sinks={})
        service.clock = TempoClock(240.0, time_fn=sim.now)  # a bar lasts 1 s
        service.sinks = {FOLDER: FolderSink(config.output.dir),
                         DEVICE: DeviceSink("sim", service.clock, mixer_factory=sim.mixer)}
        service.session.prompt, service.session.bars = "jam loop", 1
        await service.start()
        fourth = asyncio.Event()

        async def sleep(seconds: float) -> None:  # jam waits for a clip to sound: 4th started?
            await sim.sleep(seconds)
            if jam.clips_started >= 4:
                fourth.set()

        jam = Jam(service, sleep=sleep)
        await jam.start()
        try:
            await asyncio.wait_for(fourth.wait(), 60)
        finally:
            await jam.stop(fade_s=0.01)
            stop = sim.rendered  # the fade starts in the next block rendered
            sim.advance(0.1)
            await service.close()
        return jam, stop

    jam, stop = asyncio.run(main())
    starts = [p.clock_time for p in jam.schedule]
    assert len(starts) >= 4 and jam.late_clips == 0
    assert np.diff(starts) == pytest.approx([1.0] * (len(starts) - 1), abs=1e-9)
    out = sim.output[:, 0]
    first = sim.sample_at(starts[0])
    assert np.count_nonzero(out[:first]) == 0
    # the model's audio is noise-like: an exactly silent sample means nothing was playing
    silent = int(np.count_nonzero(out[first + 1:stop] == 0.0))
    assert silent == 0
