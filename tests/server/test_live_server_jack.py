"""The live features end to end through the running server, on a real (dummy-backend) JACK
server: MIDI from a virtual port wired with jack_connect, MIDI clock, /play on the JACK audio
device, jam mode, and a missing device or port.

Functional checks only: timing is tested on a simulated clock (test_live_timing.py) and measured
by ``bench/bench_live_timing.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest
import yaml

from dreamsampler.client import Reply
from dreamsampler.server.device_sink import LEAD_S
from dreamsampler.server.midi_in import get_backend
from tests import jack as j
from tests.conftest import RunningServer, make_config, run_server
from tests.server.conftest import JACK_BACKEND
from tests.server.test_live_server import status_fields, write_presets

pytestmark = pytest.mark.jack


def _wait(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll server state that no reply signals (it changes on the server's loop thread)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:g} s")
        time.sleep(0.02)


def _final(replies: list[Reply], state: str, address: str) -> Reply:
    final = replies[-1]
    assert final.address == state and final.args[0] == address, replies
    return final


@pytest.fixture(scope="module")
def live(jack: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with a virtual MIDI input ``dsin`` and the JACK audio device."""
    root = tmp_path_factory.mktemp("live")
    write_presets(root / "presets")
    config = make_config(root, **{
        "live.midi_in": ["virtual:dsin"], "live.midi_backend": JACK_BACKEND,
        "live.audio_out": "system",
    })
    yield from run_server(config)


@pytest.fixture(scope="module")
def keys(live: RunningServer) -> Iterator[Any]:
    """A virtual MIDI output (a "keyboard") connected to the server's input with jack_connect."""
    out = get_backend(JACK_BACKEND).open_output("kbd", virtual=True, client_name="ds-kbd")
    j.connect(j.wait_for_port(":kbd"), j.wait_for_port(":dsin"))  # synchronous in JACK
    yield out
    out.close()


def test_midi_ports_and_audio_devices_over_osc(live: RunningServer) -> None:
    """The server reports its open MIDI input and the JACK output device by name."""
    with live.client() as c:
        assert c.request("/midi/ports")[-1] == Reply("/midi.ports", ("virtual:dsin",))
        devices = c.request("/audio/devices")[-1]
        assert devices.address == "/audio.devices" and "system" in devices.args, devices


def test_note_triggers_preset_and_cc_moves_param(live: RunningServer, keys: Any) -> None:
    service = live.app.service
    played = live.app.service.device.plays
    with live.client() as c:
        c.request("/notify", 1)
        keys.send(mido.Message("note_on", note=60, velocity=127))
        ended = c.wait_for(lambda r: r.address == "/job.ended", 30)[-1]
        assert ended.args[1] == "done", ended
        path = Path(ended.args[2])
        assert path.parent == live.output_dir and path.is_file()
        record = json.loads(path.with_suffix(".json").read_text())
        assert record["preset"] == "beat" and record["guidance_scale"] == 6.0
        # the preset's sinks include the device: it was scheduled there too
        _wait(lambda: live.app.service.device.plays > played, 5, "device playback")
        keys.send(mido.Message("control_change", control=74, value=127))
        keys.send(mido.Message("control_change", control=74, value=64))
        expected = np.expm1(3 * 64 / 127) / np.expm1(3)  # the map's exp curve
        _wait(lambda: abs(service.session.strength - expected) < 1e-6, 5, "CC → strength")
        keys.send(mido.Message("note_on", note=5))  # unmapped
        _wait(lambda: live.app.midi.mapper.unmapped_notes == 1, 5, "unmapped note counted")
        assert status_fields(c)["unmapped_notes"] == 1


def test_midi_learn_over_osc(live: RunningServer, keys: Any) -> None:
    with live.client() as c:
        c.send("/midi/learn", "guidance")
        _wait(lambda: live.app.midi.mapper.learning == "guidance", 5, "learn mode")
        keys.send(mido.Message("control_change", channel=2, control=21, value=127))
        done = _final(c.wait_for(lambda r: r.args[:1] == ("/midi/learn",), 10), "/done",
                      "/midi/learn")
        assert done.args[1:] == ("guidance", 21, 3)
    _wait(lambda: live.app.service.session.guidance_scale == pytest.approx(12.0), 5,
          "learned CC moves guidance")
    saved = yaml.safe_load(live.app.midi.map_path.read_text())
    assert {"cc": 21, "channel": 3, "param": "guidance"}.items() <= saved["ccs"][-1].items()


def test_play_is_quantized_to_the_bar(live: RunningServer) -> None:
    """/play with quantum 4 schedules the clip on the device at the next bar line."""
    device = live.app.service.device
    assert device is not None
    with live.client() as c:
        c.request("/stop")  # the preset clip of an earlier test may still sound
        c.request("/tempo", 120)
        job = _final(c.request("/gen", "click", "bars", 1, "steps", 2), "/done", "/gen").args[1]
        for _ in range(2):
            done = _final(c.request("/play", job, 4), "/done", "/play")
            assert done.args[1] == job and 0.0 <= done.args[2] <= 2.0 + LEAD_S  # within a bar
            played = device.played[-1]
            assert played.job_id == job and played.clock_time is not None
            beat = live.app.service.clock.beat_at(played.clock_time)
            assert beat == pytest.approx(round(beat / 4) * 4, abs=1e-6)  # on a bar line
            assert device.mixer is not None and device.mixer.is_playing(played.clip_id)
        c.request("/stop")


def test_jam_mode_plays_several_clips(live: RunningServer) -> None:
    with live.client() as c:
        c.request("/param/prompt", "jam", "loop")
        c.request("/param/steps", 2)
        c.request("/param/bars", 1)
        c.request("/tempo", 240)  # a bar lasts 1 s
        assert _final(c.request("/jam", "on"), "/done", "/jam").args[1] == "on"
        jam = live.app.jam
        _wait(lambda: jam.clips_started >= 3, 30, "three jam clips")
        assert status_fields(c)["jam"] == 1
        on_clock = np.diff([p.clock_time for p in jam.schedule])
        assert np.allclose(on_clock, np.round(on_clock), atol=1e-6)  # on bar lines
        assert _final(c.request("/jam", "off"), "/done", "/jam").args[1] == "off"
        assert status_fields(c)["jam"] == 0
        assert not jam.running


def test_midi_clock_sets_the_tempo(live: RunningServer) -> None:
    """start and 48 pulses from a clock port make MIDI the tempo source (accuracy: the bench)."""
    out = get_backend(JACK_BACKEND).open_output("clk", virtual=True, client_name="ds-clk")
    try:
        j.connect(j.wait_for_port(":clk"), j.wait_for_port(":dsin"))
        midi = live.app.midi.midi
        assert midi is not None
        with live.client() as c:
            c.request("/tempo", 90)
            before = midi.received
            out.send(mido.Message("start"))
            t0 = time.monotonic()
            for i in range(48):  # a clock source paced at 120 BPM (the outside world)
                time.sleep(max(0.0, t0 + i * 60.0 / 120.0 / 24 - time.monotonic()))
                out.send(mido.Message("clock"))
            _wait(lambda: midi.received >= before + 49, 10, "49 MIDI messages")
            status = status_fields(c)
            assert status["tempo_source"] == "midi" and status["tempo"] != 90
            c.request("/tempo", 120)  # the clock follows /tempo again
    finally:
        out.close()


def test_missing_device_and_port_keep_the_server_serving(jack: str, tmp_path: Path) -> None:
    write_presets(tmp_path / "presets")
    config = make_config(tmp_path, **{
        "live.midi_in": ["no-such-port"], "live.midi_backend": JACK_BACKEND,
        "live.audio_out": "no-such-card",
    })
    for server in run_server(config):
        assert server.app.midi.midi is not None and server.app.midi.midi.missing == [
            "no-such-port"]
        with server.client() as c:
            ports = c.request("/midi/ports")[-1]
            assert ports == Reply("/midi.ports", ("no-such-port (missing)",))
            done = _final(c.request("/preset/trigger", "beat"), "/done", "/preset/trigger")
            assert Path(done.args[2]).is_file()  # the clip is in the folder
            fail = _final(c.request("/play", done.args[1]), "/fail", "/play")
            assert "no-such-card" in fail.args[1] and "output devices" in fail.args[1]
            assert fail.args[2] == done.args[1]
            assert _final(c.request("/jam", "on"), "/fail", "/jam")
            assert c.request("/status", timeout=5)[-1].address == "/status.reply"
