"""Wiring on a real (dummy-backend) JACK server: MIDI in, MIDI clock, audio out.

These tests check that messages and audio get through real JACK ports, nothing about timing: the
timing logic is tested sample-exactly on a simulated clock (test_live_timing.py), and what JACK
adds (jitter, xruns) is measured by ``bench/bench_live_timing.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import mido
import numpy as np
import pytest

from dreamsampler.server.clock import TempoClock
from dreamsampler.server.midi_in import MidiInput, get_backend, list_ports
from dreamsampler.server.midi_map import MidiMap, MidiMapper, SetParam, TriggerPreset
from tests import jack as j
from tests.server.conftest import JACK_BACKEND

pytestmark = pytest.mark.jack

MAP = MidiMap.model_validate({
    "notes": [{"note": "C3", "preset": "lofi-drums-4bars",
               "velocity": {"param": "strength", "min": 0.0, "max": 1.0}}],
    "ccs": [{"cc": 74, "param": "guidance", "min": 1.0, "max": 12.0, "curve": "exp"}],
})


class Inbox:
    """Collects what a handler receives and wakes a waiter once ``n`` items are in."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def add(self, *items: Any) -> None:
        with self._cond:
            self.items.extend(items)
            self._cond.notify_all()

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[Any]:
        def wait() -> bool:
            with self._cond:
                return self._cond.wait_for(lambda: len(self.items) >= n, timeout)

        if not await asyncio.to_thread(wait):
            raise TimeoutError(f"{len(self.items)} of {n} expected items: {self.items}")
        return self.items


async def _wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``cond``; only for state nothing signals (the port watchdog)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


def _open_sender(name: str) -> Any:
    out = get_backend(JACK_BACKEND).open_output(name, virtual=True, client_name=f"{name}-client")
    j.wait_for_port(f":{name}")
    return out


def test_midi_note_and_cc_from_jack_port(jack: str) -> None:
    """A note and a CC sent from a real virtual JACK port reach the mapper through MidiInput."""
    mapper = MidiMapper(MAP)
    inbox = Inbox()

    async def main() -> None:
        sender = _open_sender("ds-test-keys")
        # by substring of the sender's port name, on the JACK backend
        midi = MidiInput(["ds-test-keys"], lambda spec, msg: inbox.add(msg),
                         backend=JACK_BACKEND, retry_interval=0.2)
        await midi.start()
        try:
            assert "ds-test-keys" in midi.open_ports, midi.missing
            sender.send(mido.Message("note_on", note=60, velocity=127))
            sender.send(mido.Message("control_change", control=74, value=127))
            sender.send(mido.Message("note_on", note=61, velocity=100))  # unmapped
            await inbox.wait_for(3)
        finally:
            await midi.stop()
            sender.close()

    asyncio.run(main())
    actions = [a for msg in inbox.items for a in mapper.handle(msg)]
    assert actions[0] == TriggerPreset("lofi-drums-4bars", 127, 60, (("strength", 1.0),))
    assert actions[1] == SetParam("guidance", pytest.approx(12.0))
    assert mapper.unmapped_notes == 1


def test_virtual_input_with_jack_connect_and_learn(jack: str) -> None:
    """``virtual:NAME`` creates a port; jack_connect wires a sender to it; MIDI learn binds."""
    mapper = MidiMapper(MAP)
    mapper.learn("strength")
    inbox = Inbox()

    async def main() -> None:
        midi = MidiInput(["virtual:ds-in"], lambda s, m: inbox.add(*mapper.handle(m)),
                         backend=JACK_BACKEND)
        await midi.start()
        sender = _open_sender("ds-test-ctl")
        try:
            # the virtual input is a JACK port others can send to
            assert any("ds-in" in p for p in list_ports(JACK_BACKEND)["outputs"])
            j.connect(j.wait_for_port(":ds-test-ctl"), j.wait_for_port(":ds-in"))
            sender.send(mido.Message("control_change", channel=2, control=21, value=64))
            sender.send(mido.Message("control_change", channel=2, control=21, value=127))
            await inbox.wait_for(3)
        finally:
            sender.close()
            await midi.stop()

    asyncio.run(main())
    actions = inbox.items
    assert actions[0].param == "strength" and actions[0].cc == 21 and actions[0].channel == 3
    assert actions[1] == SetParam("strength", pytest.approx(64 / 127))
    assert actions[2] == SetParam("strength", pytest.approx(1.0))


def test_missing_port_is_retried_until_it_appears(jack: str) -> None:
    """A port that does not exist yet is found by the watchdog later, without errors."""
    inbox = Inbox()

    async def main() -> None:
        midi = MidiInput(["ds-late-port"], lambda s, m: inbox.add(m), backend=JACK_BACKEND,
                         retry_interval=0.1)
        await midi.start()
        assert midi.missing == ["ds-late-port"]
        sender = _open_sender("ds-late-port")
        try:
            await _wait_until(lambda: not midi.missing)
            sender.send(mido.Message("note_on", note=1))
            await inbox.wait_for(1)
        finally:
            sender.close()
        await _wait_until(lambda: midi.missing == ["ds-late-port"])  # vanished → retried
        await midi.stop()

    asyncio.run(main())
    assert inbox.items[0].note == 1


def test_midi_clock_start_pulses_and_stop_reach_the_tempo_clock(jack: str) -> None:
    """start, 48 clock pulses and stop through JACK drive the tempo clock: it follows MIDI,
    runs after the first pulse and freezes on stop. (Tempo accuracy: the bench.)"""
    clock = TempoClock(bpm=90.0)
    inbox = Inbox()
    running_after_pulses: list[bool] = []

    def on_msg(spec: str, msg: mido.Message) -> None:
        assert clock.handle_midi(msg, msg.time)
        if msg.type == "stop":
            running_after_pulses.append(clock.running)
        inbox.add(msg)

    def send(port: Any) -> None:  # a clock source paced at 120 BPM (the outside world)
        port.send(mido.Message("start"))
        t0 = time.monotonic()
        for i in range(48):
            time.sleep(max(0.0, t0 + i * 60.0 / 120.0 / 24 - time.monotonic()))
            port.send(mido.Message("clock"))
        port.send(mido.Message("stop"))

    async def main() -> None:
        sender = _open_sender("ds-test-clock")
        midi = MidiInput(["ds-test-clock"], on_msg, backend=JACK_BACKEND)
        await midi.start()
        try:
            await asyncio.to_thread(send, sender)
            await inbox.wait_for(50)
        finally:
            sender.close()
            await midi.stop()

    asyncio.run(main())
    types = [m.type for m in inbox.items]
    assert types == ["start", *["clock"] * 48, "stop"]
    assert clock.source == "midi" and not clock.running  # stopped: position frozen
    assert clock.bpm != 90.0  # the pulses set the tempo


# ---- audio -----------------------------------------------------------------------------------


class Recorder:
    """Captures ``PortAudio:in_0``; :meth:`wait_for_sound` returns once enough non-silent
    samples came in."""

    def __init__(self, sr: int) -> None:
        import sounddevice as sd

        self.sr = sr
        self.blocks: list[np.ndarray] = []
        self.loud = 0
        self._cond = threading.Condition()
        self.stream = sd.InputStream(samplerate=sr, channels=1, dtype="float32",
                                     callback=self._cb)

    def _cb(self, data: np.ndarray, frames: int, t: Any, status: Any) -> None:
        with self._cond:
            self.blocks.append(data[:, 0].copy())
            self.loud += int(np.count_nonzero(np.abs(data[:, 0]) > 0.01))
            self._cond.notify_all()

    def wait_for_sound(self, samples: int, timeout: float = 10.0) -> np.ndarray:
        """The capture from the first non-silent sample on, once at least ``samples``
        non-silent samples are in."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.loud >= samples, timeout):
                raise TimeoutError(f"only {self.loud} of {samples} samples arrived")
            sig = np.concatenate(self.blocks)
        return sig[int(np.argmax(np.abs(sig) > 0.01)):]


@pytest.fixture()
def loopback(jack: str) -> Any:
    from dreamsampler.server.mixer import Mixer

    mixer = Mixer(device="system", samplerate=j.SAMPLE_RATE)
    mixer.start()
    rec = Recorder(j.SAMPLE_RATE)
    rec.stream.start()
    j.connect(j.wait_for_port("PortAudio:out_"), j.wait_for_port("PortAudio:in_"))
    try:
        yield mixer, rec
    finally:
        rec.stream.stop()
        rec.stream.close()
        mixer.close()


def test_unknown_device_lists_devices(jack: str) -> None:
    from dreamsampler.server.audio_devices import AudioDeviceNotFoundError, list_devices
    from dreamsampler.server.mixer import Mixer

    assert any("JACK" in d.hostapi for d in list_devices())
    with pytest.raises(AudioDeviceNotFoundError, match=r"output devices: .*system"):
        Mixer(device="no-such-card").start()


def test_clip_reaches_the_jack_port(loopback: Any) -> None:
    """A 1 kHz clip at 22.05 kHz, resampled and played through JACK, arrives as 1 kHz."""
    mixer, rec = loopback
    sr = 22050
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(sr // 2) / sr)).astype(np.float32)
    mixer.play(tone, sr)
    got = rec.wait_for_sound(j.SAMPLE_RATE // 5)  # 200 ms of it
    assert np.max(np.abs(got)) == pytest.approx(0.5, abs=0.02)
    spectrum = np.abs(np.fft.rfft(got[:4800] * np.hanning(4800)))
    peak_hz = np.argmax(spectrum) * j.SAMPLE_RATE / 4800  # 10 Hz bins
    assert peak_hz == pytest.approx(1000.0, abs=10.0)
