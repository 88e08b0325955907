"""The vertical slice over real UDP: /gen, /transfer, /trigger, replies, bad input, files."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dreamsampler.client import OscClient, Reply, is_final_for
from tests.conftest import RunningServer, make_config, run_server, write_pluck


@pytest.fixture(params=["tiny", "tiny:sa3", "tiny:stable-audio"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    """The server of every test here, once per model family (MusicLDM, Stable Audio 3, Stable
    Audio Open 1.0): every OSC command works on each."""
    yield from run_server(make_config(tmp_path, **{"model.id": request.param}))


def _done(replies: list[Reply], address: str) -> Reply:
    final = replies[-1]
    assert final.address == "/done", f"expected /done {address}, got {final}"
    assert final.args[0] == address
    return final


def test_gen_writes_wav_and_sidecar(server: RunningServer, client: OscClient) -> None:
    replies = client.request("/gen", "warm analog bass", "seed", 7, "duration", 1.5)
    assert replies[0].address == "/queued"
    job_id, position = replies[0].args
    assert position == 0
    done = _done(replies, "/gen")
    assert done.args[1] == job_id
    path = Path(done.args[2])
    assert path.parent == server.output_dir and path.name.endswith("_warm-analog-bass_7.wav")
    info = sf.info(path)
    assert info.samplerate == 44100 and info.subtype == "PCM_24"  # the default output rate
    assert info.frames == int(1.5 * 44100)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["seed"] == 7 and record["prompt"] == "warm analog bass"
    assert record["model"] == server.app.config.model.id
    assert record["duration"] == 1.5 and record["job_id"] == job_id
    assert not list(server.output_dir.glob(".*")), "temporary files left behind"
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_same_seed_same_audio_different_seed_different(client: OscClient) -> None:
    paths = []
    for seed in (3, 3, 4):
        paths.append(Path(client.request("/gen", "dub techno chord", "seed", seed)[-1].args[2]))
    a, b, c = (sf.read(p)[0] for p in paths)
    assert len(set(paths)) == 3, "each clip gets its own file"
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_max_and_pd_style_atoms(client: OscClient) -> None:
    """Pd sends floats for ints; Max/Pd split an unquoted prompt into atoms."""
    replies = client.request("/gen", "warm", "analog", "bass", "seed", 7.0, "steps", 2.0)
    path = Path(_done(replies, "/gen").args[2])
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["prompt"] == "warm analog bass"
    assert record["seed"] == 7 and record["num_inference_steps"] == 2


def test_transfer_at_two_strengths(server: RunningServer, client: OscClient) -> None:
    source = write_pluck(server.input_dir / "pluck.wav")
    outputs = {}
    for strength in (0.3, 0.8):
        replies = client.request("/transfer", str(source), "a dub reggae mix",
                                 "strength", strength, "seed", 1)
        path = Path(_done(replies, "/transfer").args[2])
        record = json.loads(path.with_suffix(".json").read_text())
        assert record["strength"] == strength and record["input_path"] == str(source)
        assert sf.info(path).frames == 66150  # as long as the 1.5 s input (no duration given)
        outputs[strength] = sf.read(path)[0]
    assert not np.array_equal(outputs[0.3], outputs[0.8])
    # relative paths are looked up in the input folders
    _done(client.request("/transfer", "pluck.wav", "x", "strength", 0.5), "/transfer")


def test_param_and_trigger(server: RunningServer, client: OscClient) -> None:
    assert client.request("/param/prompt", "glassy", "pad")[-1].args == ("/param/prompt",
                                                                        "glassy pad")
    client.request("/param/seed", 11.0)
    client.request("/param/duration", 0.5)
    path = Path(_done(client.request("/trigger"), "/trigger").args[2])
    record = json.loads(path.with_suffix(".json").read_text())
    assert (record["prompt"], record["seed"], record["duration"]) == ("glassy pad", 11, 0.5)
    write_pluck(server.input_dir / "in.wav")
    client.request("/param/input", "in.wav")
    client.request("/param/strength", 0.4)
    path = Path(_done(client.request("/trigger"), "/trigger").args[2])
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["strength"] == 0.4 and record["input_path"].endswith("in.wav")


def test_bad_input_fails_and_server_keeps_serving(server: RunningServer,
                                                  client: OscClient) -> None:
    not_audio = server.input_dir / "notes.txt"
    not_audio.write_text("not audio")
    cases = [
        (("/nope", 1), "/nope", "unknown command"),
        (("/gen",), "/gen", "missing prompt"),
        (("/gen", "x", "seed", "abc"), "/gen", "seed: expected int"),
        (("/gen", "x", "seed", 1, "color", "red"), "/gen", "unknown option"),
        (("/gen", "x", "duration", 99.0), "/gen", "exceeds the limit"),
        (("/gen", "x", "steps", 0), "/gen", "below the minimum"),
        (("/transfer", "pluck.wav", "x", "strength", 1.5), "/transfer", "above the maximum"),
        (("/transfer", str(server.input_dir / "missing.wav"), "x"), "/transfer", "no such file"),
        (("/transfer", str(not_audio), "x"), "/transfer", "not a readable audio file"),
        (("/transfer", "/etc/hostname", "x"), "/transfer", "outside the input folders"),
        (("/cancel", 4242), "/cancel", "no queued or running job"),
        (("/param/strength", -1.0), "/param/strength", "below the minimum"),
        (("/notify", 1, 70000), "/notify", "above the maximum"),
    ]
    for message, address, text in cases:
        reply = client.request(*message, timeout=10)[-1]
        assert reply.address == "/fail", (message, reply)
        assert reply.args[0] == address and text in reply.args[1], (message, reply)
        assert client.request("/status", timeout=5)[-1].address == "/status.reply"
    client.send_raw(b"\x00garbage that is not OSC")
    assert client.request("/version", timeout=5)[-1].args[:2] == ("dreamsampler", "0.1.0")
    assert server.app.osc.malformed == 1
    assert list(server.output_dir.iterdir()) == []


def test_unwritable_output_folder_fails_cleanly(server: RunningServer,
                                                client: OscClient) -> None:
    out = server.output_dir
    out.rmdir()
    out.parent.chmod(0o500)  # the folder can no longer be created
    try:
        import os

        if os.geteuid() == 0:  # root ignores permissions: make the path a file instead
            out.parent.chmod(0o700)
            out.write_text("a file where the folder should be")
        reply = client.request("/gen", "x", timeout=10)[-1]
        assert reply.address == "/fail" and "output folder" in reply.args[1]
    finally:
        out.parent.chmod(0o700)


def test_status_answers_while_generating(tmp_path: Path) -> None:
    """/status and /fail replies keep coming while a long job runs in the engine thread."""
    from tests.conftest import make_config, run_server

    config = make_config(tmp_path, **{"defaults.num_inference_steps": 200,
                                      "defaults.duration": 8.0})
    for server in run_server(config):
        with server.client() as c:
            c.send("/notify", 1)
            c.wait_for(is_final_for("/notify"))
            c.send("/gen", "long one")
            job_id = c.wait_for(lambda r: r.address == "/queued")[-1].args[0]
            c.wait_for(lambda r: r.address == "/progress")
            status = c.request("/status", timeout=5)[-1]
            assert status.args[1] == job_id, "the job is still running"
            assert c.request("/gen", "x", "steps", -3, timeout=5)[-1].address == "/fail"
            assert c.request("/cancel", job_id, timeout=5)[-1].address == "/done"
            ended = c.wait_for(lambda r: r.address == "/job.ended", timeout=30)[-1]
            assert ended.args == (job_id, "cancelled", "cancelled")


def test_notify_progress_cancel_and_sync(server: RunningServer) -> None:
    with server.client() as listener, server.client() as sender:
        listener.request("/notify", 1)
        listener.request("/notify", 1)  # registering twice changes nothing
        queued = [sender.request("/gen", f"clip {i}", "steps", 30, "id", 100 + i,
                                 timeout=5)[0] for i in range(1)]
        sender.send("/gen", "queued behind", "id", 200, "steps", 30)
        sender.wait_for(lambda r: r.address == "/queued")
        assert sender.request("/cancel", 200, timeout=5)[-1].args == ("/cancel", 200)
        sender.send("/sync", 9)
        got = sender.wait_for(lambda r: r.address == "/synced", timeout=60)
        assert got[-1].args == (9,)
        assert any(r.address == "/fail" and r.args[2] == 200 and r.args[1] == "cancelled"
                   for r in sender.received)
        assert queued[0].args[0] == 100
        listener.wait_for(lambda r: r.address == "/job.ended" and r.args[0] == 200, timeout=30)
        events = listener.received
        fractions = [r.args[1] for r in events if r.address == "/progress" and r.args[0] == 100]
        assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)
        assert any(r.address == "/job.started" and r.args[0] == 100 for r in events)
        assert any(r.address == "/job.ended" and r.args[1] == "done" for r in events)


def test_reply_port_for_max_and_pd(server: RunningServer) -> None:
    """udpsend/netsend send from one port and listen on another: /notify sets the reply port."""
    import socket

    listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listen.bind(("127.0.0.1", 0))
    listen.settimeout(10)
    reply_port = listen.getsockname()[1]
    with server.client() as sender:
        sender.send("/notify", 1, float(reply_port))
        sender.send("/version")
        from pythonosc.osc_message import OscMessage

        got = [OscMessage(listen.recv(4096)).address for _ in range(2)]
        assert got == ["/done", "/version.reply"]
        assert sender.receive(0.3) is None, "nothing goes to the sending port"
    listen.close()
    # a client that went away must not break anything
    with server.client() as other:
        assert other.request("/status", timeout=5)[-1].address == "/status.reply"


def test_queue_full(tmp_path: Path) -> None:
    from tests.conftest import held_engine, make_config, run_server

    config = make_config(tmp_path, **{"limits.queue_size": 1})
    engine = held_engine(config)  # its worker is held busy, deterministically
    for server in run_server(config, engine):
        held = asyncio.run_coroutine_threadsafe(engine.hold(), server.loop)
        assert engine.busy.wait(10)
        with server.client() as c:
            c.send("/gen", "first")
            assert c.wait_for(lambda r: r.address == "/queued", timeout=5)[-1].args[1] == 0
            reply = c.request("/gen", "second", timeout=5)[-1]
            assert reply.address == "/fail" and reply.args[1] == "queue full"
            engine.release.set()
            assert c.wait_for(lambda r: r.address == "/done", timeout=30)[-1].args[0] == "/gen"
            held.result(5)


def test_many_clients_at_once(server: RunningServer) -> None:
    """Real threads, each with its own socket, all get their own /done."""
    results: dict[int, str] = {}

    def run(i: int) -> None:
        with server.client() as c:
            results[i] = c.request("/gen", f"clip {i}", "seed", i, timeout=60)[-1].address

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: "/done" for i in range(4)}
    assert len(list(server.output_dir.glob("*.wav"))) == 4
