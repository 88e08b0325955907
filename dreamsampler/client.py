"""A small synchronous OSC client for scripts, the ``send``/``doctor`` commands and tests.

It sends from one UDP socket, so the server's replies come back to it (scsynth-style).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pythonosc.osc_message import OscMessage
from pythonosc.udp_client import SimpleUDPClient


@dataclass(frozen=True)
class Reply:
    """A received OSC message."""

    address: str
    args: tuple[Any, ...]

    def __str__(self) -> str:
        return " ".join([self.address, *(repr(a) if isinstance(a, str) else str(a)
                                          for a in self.args)])


def is_final_for(address: str, job_id: int | None = None) -> Callable[[Reply], bool]:
    """Predicate: the reply ends a request to ``address`` (its ``/done``, ``/fail`` or reply);
    with ``job_id``, only the ``/done``/``/fail`` of that job (``/done address job_id ...``,
    ``/fail address message job_id``).

    ``/queued`` is not final: a generation ends with ``/done <address>`` or ``/fail <address>``.
    """
    from dreamsampler.server.contract import direct_replies

    direct = direct_replies()

    def final(reply: Reply) -> bool:
        if reply.address in ("/done", "/fail"):
            if not reply.args or reply.args[0] != address:
                return False
            return job_id is None or job_of(reply) == job_id
        return reply.address == direct.get(address)

    return final


def job_of(reply: Reply) -> int | None:
    """The job id a job's ``/done address job_id path`` or ``/fail address message job_id``
    names, else None."""
    at = 1 if reply.address == "/done" else 2 if reply.address == "/fail" else None
    if at is None or len(reply.args) <= at or not isinstance(reply.args[at], int):
        return None
    return int(reply.args[at])


class JobReplies:
    """Predicate for :meth:`OscClient.wait_for` that ends a request to ``address`` the way
    :func:`is_final_for` does, but once ``/queued job_id`` arrived only on that job's own
    ``/done`` or ``/fail`` (another job's end, e.g. of an earlier request, is skipped)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.job_id: int | None = None
        self._final = is_final_for(address)

    def __call__(self, reply: Reply) -> bool:
        if reply.address == "/queued" and self.job_id is None and reply.args:
            self.job_id = int(reply.args[0])
            self._final = is_final_for(self.address, self.job_id)
            return False
        return self._final(reply)


class OscClient:
    """Send OSC messages to a dreamsampler server and collect its replies.

    Args:
        host: server address.
        port: server UDP port.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9000) -> None:
        self._client = SimpleUDPClient(host, port)
        self.received: list[Reply] = []

    def __enter__(self) -> OscClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def send(self, address: str, *args: Any) -> None:
        self._client.send_message(address, list(args))

    def send_raw(self, data: bytes) -> None:
        """Send raw bytes (e.g. a malformed datagram, in tests)."""
        self._client._sock.sendto(data, (self._client._address, self._client._port))

    def receive(self, timeout: float) -> Reply | None:
        """The next message, or ``None`` after ``timeout`` seconds."""
        data = self._client.receive(timeout)
        if not data:
            return None
        msg = OscMessage(data)
        reply = Reply(msg.address, tuple(msg.params))
        self.received.append(reply)
        return reply

    def wait_for(self, until: Callable[[Reply], bool], timeout: float = 30.0) -> list[Reply]:
        """Collect replies until one satisfies ``until`` (included) or ``timeout`` seconds pass.

        Raises:
            TimeoutError: no matching reply in time; the message lists what did arrive.
        """
        deadline = time.monotonic() + timeout
        got: list[Reply] = []
        while (left := deadline - time.monotonic()) > 0:
            reply = self.receive(min(left, 0.5))
            if reply is None:
                continue
            got.append(reply)
            if until(reply):
                return got
        shown = "; ".join(str(r) for r in got) or "nothing"
        raise TimeoutError(f"no matching reply within {timeout:g} s (got: {shown})")

    def request(self, address: str, *args: Any, timeout: float = 30.0) -> list[Reply]:
        """Send a command and wait for its final reply (see :func:`is_final_for`); for a job,
        the ``/done`` or ``/fail`` of the job its ``/queued`` named (:class:`JobReplies`)."""
        self.send(address, *args)
        return self.wait_for(JobReplies(address), timeout)


def parse_cli_args(words: Iterable[str]) -> list[Any]:
    """Shell words → OSC atoms: int, then float, else string (``"7"`` → 7, ``"0.5"`` → 0.5)."""
    atoms: list[Any] = []
    for word in words:
        for cast in (int, float):
            try:
                atoms.append(cast(word))
                break
            except ValueError:
                continue
        else:
            atoms.append(word)
    return atoms
