"""Clients that behave like the Max and Pd patches: they send from one UDP port and listen on
another, send every number as a float and split prompts into atoms; some register twice, never
register, or go away while their job runs."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from dreamsampler.client import Reply
from tests.conftest import RunningServer


class PatchLikeClient:
    """``[udpsend]`` + ``[udpreceive]``: two sockets; every number is sent as a float (Pd)."""

    def __init__(self, server_port: int) -> None:
        self.target = ("127.0.0.1", server_port)
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.bind(("127.0.0.1", 0))
        self.inbox = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.inbox.bind(("127.0.0.1", 0))
        self.reply_port = self.inbox.getsockname()[1]

    def send(self, address: str, *args: Any) -> None:
        builder = OscMessageBuilder(address)
        for arg in args:
            if isinstance(arg, int | float):
                builder.add_arg(float(arg), "f")
            else:
                builder.add_arg(arg, "s")
        self.out.sendto(builder.build().dgram, self.target)

    def wait(self, address: str, first: Any = None, timeout: float = 30) -> list[Reply]:
        """Replies on the listening socket up to one with ``address`` (and first arg)."""
        got: list[Reply] = []
        self.inbox.settimeout(timeout)
        while True:
            msg = OscMessage(self.inbox.recv(65536))
            reply = Reply(msg.address, tuple(msg.params))
            got.append(reply)
            if reply.address == address and (first is None or reply.args[:1] == (first,)):
                return got

    def drain(self, seconds: float = 0.3) -> list[Reply]:
        got = []
        self.inbox.settimeout(seconds)
        try:
            while True:
                msg = OscMessage(self.inbox.recv(65536))
                got.append(Reply(msg.address, tuple(msg.params)))
        except TimeoutError:
            return got

    def close(self) -> None:
        self.out.close()
        self.inbox.close()


def test_pd_style_floats_and_split_prompt(server: RunningServer) -> None:
    pd = PatchLikeClient(server.port)
    pd.send("/notify", 1, pd.reply_port)  # both as floats
    assert pd.wait("/done")[-1].args == ("/notify", 1, pd.reply_port)
    pd.send("/gen", "warm", "analog", "bass", "seed", 7, "steps", 2, "guidance", 2.5,
            "duration", 1)
    replies = pd.wait("/done", "/gen")
    queued = next(r for r in replies if r.address == "/queued")
    path = Path(replies[-1].args[2])
    assert replies[-1].args[1] == queued.args[0]
    record = json.loads(path.with_suffix(".json").read_text())
    assert (record["prompt"], record["seed"], record["num_inference_steps"]) == (
        "warm analog bass", 7, 2)
    pd.send("/cancel", float(queued.args[0]))  # float job id: parsed, job already ended
    fail = pd.wait("/fail")[-1]
    assert fail.args[0] == "/cancel" and fail.args[2] == queued.args[0]
    pd.send("/gen", "x", "seed", 7.5)  # a fractional float for an int: a clear /fail
    assert "expected an integer" in pd.wait("/fail")[-1].args[1]
    pd.close()


def test_registering_twice_gives_one_copy_and_the_latest_port(server: RunningServer) -> None:
    a = PatchLikeClient(server.port)
    a.send("/notify", 1, a.reply_port)
    a.send("/notify", 1, a.reply_port)
    a.wait("/done")
    a.wait("/done")
    a.send("/gen", "x", "steps", 2, "duration", 1, "id", 41)
    got = a.wait("/done", "/gen") + a.wait("/job.ended") + a.drain()
    assert [r.address for r in got].count("/job.started") == 1, got
    assert [r.address for r in got].count("/job.ended") == 1, got
    # registering again with another reply port moves replies there
    b_inbox = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b_inbox.bind(("127.0.0.1", 0))
    a.send("/notify", 1, b_inbox.getsockname()[1])
    b_inbox.settimeout(10)
    assert OscMessage(b_inbox.recv(65536)).address == "/done"
    a.send("/status")
    assert OscMessage(b_inbox.recv(65536)).address == "/status.reply"
    assert a.drain() == [], "nothing goes to the old reply port"
    b_inbox.close()
    a.close()


def test_a_client_that_never_registers_gets_replies_on_its_sending_port(
        server: RunningServer) -> None:
    max_like = PatchLikeClient(server.port)
    max_like.send("/gen", "x", "steps", 2, "duration", 1)
    max_like.out.settimeout(30)
    addresses = []
    while "/done" not in addresses:
        addresses.append(OscMessage(max_like.out.recv(65536)).address)
    assert addresses[0] == "/queued" and "/progress" not in addresses, "not registered"
    assert max_like.drain() == [], "no reply port was registered"
    assert len(list(server.output_dir.glob("*.wav"))) == 1
    max_like.close()


def test_a_client_that_goes_away_does_not_fail_its_job(server: RunningServer) -> None:
    gone = PatchLikeClient(server.port)
    gone.send("/notify", 1, gone.reply_port)
    gone.wait("/done")
    gone.inbox.close()  # the patch was closed: its replies now hit a closed port
    gone.send("/gen", "x", "steps", 4, "duration", 1, "id", 77)
    gone.out.close()
    with server.client() as watcher:
        watcher.request("/notify", 1)
        ended = watcher.wait_for(lambda r: r.address == "/job.ended" and r.args[0] == 77, 30)
        assert ended[-1].args[1] == "done", "the job finished although its client left"
        status = watcher.request("/status", timeout=5)[-1]
        assert status.args[2] == 1 and status.args[3] == 0, "jobs_done 1, jobs_failed 0"
        replies = watcher.request("/gen", "still serving", "steps", 2, "duration", 1)
        assert replies[-1].address == "/done"
    assert len(list(server.output_dir.glob("*.wav"))) == 2
