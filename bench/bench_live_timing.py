"""Live timing on a real JACK server (dummy backend): what the device and MIDI path really do.

The tests check timing logic sample-exactly on a simulated clock (tests/server/test_live_timing.py);
this script measures what a real audio server adds, and prints the figures (nothing is asserted):

  * MIDI clock: 24 ppqn at 120 BPM from a sender thread through a JACK MIDI port into
    :class:`MidiInput` and :class:`TempoClock`: tempo measured, error (BPM), pulses received.
  * Bar quantization: clips scheduled on the next bar (240 BPM) through the mixer, captured on a
    JACK loopback (``PortAudio:out_0 -> PortAudio:in_0``): onset minus bar line (ms), mean and
    spread over bars without an xrun. The mean mixes constant PortAudio/JACK latency bookkeeping;
    the spread is the placement jitter.
  * Jam: three one-bar clips through the device sink (the third after the second has looped
    once): the longest quiet run (|x| < -60 dBFS) between the first start and the stop (ms).

It starts its own JACK server (``jackd -n NAME --no-realtime -d dummy -r 48000 -p 256``; jackd2
must be installed) and leaves any other alone.

Run:  OMP_NUM_THREADS=1 python bench/bench_live_timing.py [--bars 8] [--midi-runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import jack as j  # a private JACK server, shared with the tests)

JACK_BACKEND = "rtmidi/UNIX_JACK"


# ---- MIDI clock ----------------------------------------------------------------------------


def midi_clock(run: int, bpm: float = 120.0, pulses: int = 120) -> tuple[float, int]:
    """(tempo measured in BPM, pulses received) for ``pulses`` pulses sent at ``bpm``."""
    import mido

    from dreamsampler.server.clock import TempoClock
    from dreamsampler.server.midi_in import MidiInput, get_backend

    interval = 60.0 / bpm / 24
    clock = TempoClock(bpm=90.0)
    received = 0
    all_in = threading.Event()

    def on_msg(spec: str, msg: mido.Message) -> None:
        nonlocal received
        clock.handle_midi(msg, msg.time)
        if msg.type == "clock":
            received += 1
            if received == pulses:
                all_in.set()

    def send(port: Any) -> None:
        port.send(mido.Message("start"))
        t0 = time.monotonic() + 0.01
        for i in range(pulses):  # absolute deadlines, no drift
            time.sleep(max(0.0, t0 + i * interval - time.monotonic()))
            port.send(mido.Message("clock"))

    async def main() -> None:
        name = f"bench-clock{run}"
        sender = get_backend(JACK_BACKEND).open_output(name, virtual=True,
                                                       client_name=f"{name}-client")
        j.wait_for_port(f":{name}")
        midi = MidiInput([name], on_msg, backend=JACK_BACKEND)
        await midi.start()
        try:
            await asyncio.sleep(0.1)  # let the JACK graph take the new connection
            await asyncio.to_thread(send, sender)
            await asyncio.to_thread(all_in.wait, 2.0)  # stragglers; lost pulses stay lost
        finally:
            sender.close()
            await midi.stop()

    asyncio.run(main())
    return clock.bpm, received


# ---- audio loopback ------------------------------------------------------------------------


class Recorder:
    """Captures ``PortAudio:in_0`` with the stream time of every block."""

    def __init__(self, sr: int) -> None:
        import sounddevice as sd

        self.sr = sr
        self.blocks: list[tuple[float, np.ndarray]] = []
        self.lost_blocks = 0
        self.present = np.zeros(0, dtype=bool)
        self.stream = sd.InputStream(samplerate=sr, channels=1, dtype="float32",
                                     callback=self._cb)

    def _cb(self, data: np.ndarray, frames: int, t: Any, status: Any) -> None:
        self.blocks.append((float(t.inputBufferAdcTime), data[:, 0].copy()))

    def signal(self) -> tuple[float, np.ndarray]:
        """(stream time of sample 0, samples). Each block is placed by its ADC time, so a block
        lost in an xrun leaves zeros instead of shifting the rest (``lost_blocks``)."""
        blocks = list(self.blocks)
        t0 = blocks[0][0]
        n = len(blocks[0][1])
        slots = [round((t - t0) * self.sr / n) for t, _ in blocks]
        out = np.zeros((slots[-1] + 1) * n, dtype=np.float32)
        for slot, (_, block) in zip(slots, blocks, strict=True):
            out[slot * n:slot * n + len(block)] = block
        self.lost_blocks = slots[-1] + 1 - len(set(slots))
        self.present = np.zeros(slots[-1] + 1, dtype=bool)
        self.present[slots] = True
        return t0, out


def stream_offset(mixer: Any, rec: Recorder) -> float:
    """Output stream time minus input stream time (same JACK clock, per-stream origins)."""
    return float(np.median([mixer.time() - rec.stream.time for _ in range(20)]))


def bar_onset_errors(bars: list[tuple[float, int]], sig: np.ndarray, t0: float, offset: float,
                     present: np.ndarray, sr: int) -> tuple[list[float], list[bool]]:
    """Onset (first sample above 0.01 within ±100 ms) minus scheduled stream time ``at``, in ms,
    per ``(at, xruns)``; and whether each is clean (no xrun, no lost capture block)."""
    errors_ms, clean = [], []
    for at, xruns in bars:
        start = round((at - offset - t0) * sr) - sr // 10
        window = np.abs(sig[max(0, start):start + sr // 5])
        onset = max(0, start) + int(np.argmax(window > 0.01))
        errors_ms.append((t0 + onset / sr + offset - at) * 1000.0)
        clean.append(xruns == 0 and bool(present[max(0, start) // j.PERIOD:
                                                 onset // j.PERIOD + 2].all()))
    return errors_ms, clean


def loopback() -> tuple[Any, Recorder]:
    from dreamsampler.server.mixer import Mixer

    mixer = Mixer(device="system", samplerate=j.SAMPLE_RATE)
    mixer.start()
    rec = Recorder(j.SAMPLE_RATE)
    rec.stream.start()
    j.connect(j.wait_for_port("PortAudio:out_"), j.wait_for_port("PortAudio:in_"))
    time.sleep(0.1)
    rec.blocks.clear()
    return mixer, rec


def bar_quantization(mixer: Any, rec: Recorder, n_bars: int) -> None:
    from dreamsampler.server.clock import TempoClock

    sr = j.SAMPLE_RATE
    clock = TempoClock(bpm=240.0, time_fn=mixer.time)  # the grid on the stream clock
    clip = (0.5 * np.random.default_rng(0).uniform(-1, 1, 4800)).astype(np.float32)
    clip[0] = 0.5
    bars: list[tuple[float, int]] = []
    for _ in range(n_bars):
        at = clock.next_bar(mixer.time() + 0.1)
        before = mixer.underruns
        mixer.play(clip, sr, at, fade_in_s=0.0)
        time.sleep(max(0.0, at - mixer.time()) + 0.3)
        bars.append((at, mixer.underruns - before))
    t0, sig = rec.signal()
    errors, clean = bar_onset_errors(bars, sig, t0, stream_offset(mixer, rec), rec.present, sr)
    good = [e for e, c in zip(errors, clean, strict=True) if c]
    print(f"bar offset (onset - bar line, loopback): {len(good)} of {n_bars} bars clean")
    if good:
        print(f"  mean {statistics.fmean(good):+.3f} ms, spread (max - min) "
              f"{max(good) - min(good):.3f} ms, per bar {[round(e, 3) for e in errors]}")
    print(f"  all bars: mean {statistics.fmean(errors):+.3f} ms, spread "
          f"{max(errors) - min(errors):.3f} ms")
    print(f"  period {1000 * j.PERIOD / sr:.3f} ms, underruns {mixer.underruns}, late starts "
          f"{mixer.late_starts}, capture blocks lost {rec.lost_blocks}")


def longest_quiet_run(x: np.ndarray, known: np.ndarray) -> int:
    """Longest run of samples with |x| < 1e-3 (-60 dBFS) among samples that were captured."""
    quiet = (np.abs(x) < 1e-3) & known
    best = cur = 0
    for q in quiet:
        cur = cur + 1 if q else 0
        best = max(best, cur)
    return best


def jam_gap(mixer: Any, rec: Recorder) -> None:
    from dreamsampler.engine.request import GenerationRequest, GenerationResult
    from dreamsampler.server.clock import TempoClock
    from dreamsampler.server.delivery import DEVICE, Clip, Delivery
    from dreamsampler.server.device_sink import DeviceSink

    sr = j.SAMPLE_RATE
    clock = TempoClock(bpm=480.0)  # a bar lasts 0.5 s
    bar = clock.bar_seconds()
    device = DeviceSink("system", clock, mixer_factory=lambda **_: mixer)
    device.mixer = mixer
    job = Delivery(GenerationRequest("jam"), sinks=(DEVICE,), jam=True)
    rec.blocks.clear()
    before = mixer.underruns

    async def run() -> list[Any]:
        schedule = []
        for n, (freq, delay) in enumerate(zip([220.0, 330.0, 440.0], [0.0, 0.1, 0.7],
                                              strict=True)):
            await asyncio.sleep(delay)
            t = np.arange(round(bar * 22050)) / 22050  # 22.05 kHz: resampled by soxr
            audio = (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None, :]
            played = await device.deliver(Clip(n, GenerationResult(audio, 22050), job))
            schedule.append(played)
            await asyncio.sleep(max(0.0, played.clock_time - clock.time_fn()))
        await asyncio.sleep(0.4)
        device.stop_jam(fade_s=0.01)
        await asyncio.sleep(0.1)
        return schedule

    schedule = asyncio.run(run())
    t0, sig = rec.signal()
    offset = stream_offset(mixer, rec)
    known = np.repeat(rec.present, j.PERIOD)[:len(sig)]
    first = round((schedule[0].stream_time - offset - t0) * sr) + j.PERIOD
    last = round((schedule[-1].stream_time - offset - t0) * sr) + round(0.3 * sr)
    gap = longest_quiet_run(sig[first:last], known[first:last])
    lost = int((~known[first:last]).sum() // j.PERIOD)
    print(f"jam: {len(schedule)} clips, longest gap {1000 * gap / sr:.3f} ms (period "
          f"{1000 * j.PERIOD / sr:.3f} ms), xruns {mixer.underruns - before}, capture blocks "
          f"lost {lost}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=8, help="bars measured (default 8)")
    parser.add_argument("--midi-runs", type=int, default=3, help="MIDI clock runs (default 3)")
    args = parser.parse_args()
    if not j.jack_available():
        sys.exit("jackd2 tools (jackd, jack_wait, jack_connect, jack_lsp) are not installed")
    with j.jack_server(f"dsbench{os.getpid()}"):
        for run in range(args.midi_runs):
            bpm, received = midi_clock(run)
            print(f"MIDI clock run {run}: {bpm:.3f} BPM for 120 BPM (error {bpm - 120:+.3f} "
                  f"BPM), {received} of 120 pulses")
        mixer, rec = loopback()
        try:
            bar_quantization(mixer, rec, args.bars)
            jam_gap(mixer, rec)
        finally:
            rec.stream.stop()
            rec.stream.close()
            mixer.close()
            sys.modules["sounddevice"]._terminate()


if __name__ == "__main__":
    main()
