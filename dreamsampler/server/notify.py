"""Who gets replies and notifications (scsynth's ``/notify``), bounded and spoof-proof.

Two tables, kept apart so that neither can lock the other out:

- **Reply ports.** Max's ``[udpsend]`` and Pd's ``[netsend -u -b]`` send from another port than
  the one their receiver listens on, so ``/notify 1 <reply_port>`` names where replies to that
  sender's commands go. The table holds ``max_reply_ports`` senders; when it is full the least
  recently used entry is dropped, so a reply port given with a request is always honoured (it
  never answers "too many").
- **Streams.** ``/progress``, ``/job.started``, ``/job.ended`` and ``/midi.learned`` go only to
  *confirmed* registrations. A registration is confirmed by an echo, as DNS cookies do: the
  server answers ``/notify 1 [reply_port]`` with ``/notify.cookie i:cookie`` (sent to the reply
  address) and ``/done /notify 1 reply_port``; the client sends ``/notify 1 reply_port cookie``
  and only then receives the stream. A forged source address never sees the cookie, so it gets
  nothing but the small direct replies. The cookie is an HMAC of the reply address and the
  current time window under a secret made at start; it needs no state, stays valid for
  ``cookie_window`` to ``2 × cookie_window`` seconds, and is below 2**24 so that Pd, which
  sends every number as a 32-bit float, echoes it exactly. At most ``max_clients`` streams
  exist; a new confirmation then evicts the least recently confirmed one (nobody is locked
  out), and a stream not confirmed again for ``ttl`` seconds expires (``/notify 1 port cookie``
  again is the keep-alive; each ``/notify 1`` brings a fresh cookie).

Senders on the loopback interface cannot be forged from the network (the kernel drops packets
from 127.0.0.0/8 or ::1 that arrive on any other interface), so by default their ``/notify 1``
is confirmed at once (``cookie_loopback=False``). See docs/hardening.md.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from dreamsampler.engine.request import RequestError

Address = tuple[str, int]

MAX_CLIENTS = 64
"""Confirmed stream registrations held at once, by default."""
CLIENT_TTL = 3600.0
"""Seconds a confirmed registration lasts without being confirmed again."""
MAX_REPLY_PORTS = 4096
"""Senders whose reply port is remembered (least recently used dropped beyond)."""
COOKIE_WINDOW = 300.0
"""Seconds of one cookie time window (a cookie is accepted in its window and the next)."""
COOKIE_LIMIT = 1 << 24
"""Cookies are in ``[0, COOKIE_LIMIT)``: exact as a 32-bit float (Pd)."""


class TooManyClientsError(RequestError):
    """Kept for compatibility: registrations are now evicted, never refused."""


class BadCookieError(RequestError):
    """``/notify 1 port cookie`` with a cookie the server did not send to that address."""


def client_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of a sender's ``host`` string (an IPv6 zone suffix ``%eth0`` dropped, an
    IPv4-mapped IPv6 address as its IPv4 address); None when it is not an IP address."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``::ffff:127.x.x.x``)."""
    ip = client_ip(host)
    return ip is not None and ip.is_loopback


class Clients:
    """Reply ports and confirmed notification streams, bounded in number and age.

    Args:
        max_clients: confirmed stream registrations held at once (the least recently confirmed
            is evicted by a new one).
        ttl: seconds a confirmed registration lasts without a new confirmation.
        clock: monotonic seconds (injectable for tests).
        max_reply_ports: senders whose reply port is remembered (least recently used dropped).
        cookie_loopback: whether loopback senders must echo the cookie too.
        secret: the cookie key (default: 32 random bytes).
        cookie_window: seconds of one cookie time window.
    """

    def __init__(self, max_clients: int = MAX_CLIENTS, ttl: float = CLIENT_TTL,
                 clock: Callable[[], float] = time.monotonic,
                 max_reply_ports: int = MAX_REPLY_PORTS, cookie_loopback: bool = False,
                 secret: bytes | None = None, cookie_window: float = COOKIE_WINDOW) -> None:
        self.max_clients = max_clients
        self.ttl = ttl
        self.clock = clock
        self.max_reply_ports = max_reply_ports
        self.cookie_loopback = cookie_loopback
        self.cookie_window = cookie_window
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._reply_to: OrderedDict[Address, Address] = OrderedDict()  # sender → reply address
        self._streams: OrderedDict[Address, float] = OrderedDict()  # target → confirmed at
        #: registrations evicted to make room (least recently confirmed first)
        self.evicted = 0

    # -- cookies ---------------------------------------------------------------------------------

    def cookie(self, target: Address, window: int | None = None) -> int:
        """The cookie for reply address ``target`` in time window ``window`` (default: now)."""
        if window is None:
            window = int(self.clock() // self.cookie_window)
        text = f"{target[0]}|{target[1]}|{window}".encode()
        digest = hmac.new(self._secret, text, hashlib.sha256).digest()
        return int.from_bytes(digest[:4], "big") % COOKIE_LIMIT

    def cookie_ok(self, target: Address, cookie: int) -> bool:
        now = int(self.clock() // self.cookie_window)
        return any(hmac.compare_digest(str(self.cookie(target, w)), str(cookie))
                   for w in (now, now - 1))

    def needs_cookie(self, sender: Address) -> bool:
        return self.cookie_loopback or not is_loopback(sender[0])

    # -- registration ----------------------------------------------------------------------------

    def set_reply_port(self, sender: Address, reply_port: int | None) -> Address:
        """Replies to ``sender`` go to ``reply_port`` on its host (``None``/0: its own port);
        returns the reply address. Never refuses: the least recently used entry makes room."""
        target = (sender[0], reply_port or sender[1])
        self._reply_to[sender] = target
        self._reply_to.move_to_end(sender)
        while len(self._reply_to) > self.max_reply_ports:
            self._reply_to.popitem(last=False)
        return target

    def confirm(self, target: Address) -> None:
        """Start (or renew) the stream to ``target``; evicts the least recently confirmed
        registration when ``max_clients`` are held."""
        self.expire()
        self._streams[target] = self.clock()
        self._streams.move_to_end(target)
        while len(self._streams) > self.max_clients:
            self._streams.popitem(last=False)
            self.evicted += 1

    def register(self, sender: Address, reply_port: int | None = None,
                 cookie: int | None = None) -> tuple[Address, bool]:
        """``/notify 1 [reply_port] [cookie]``: set the reply port and, when the cookie matches
        (or is not needed), confirm the stream. Returns the reply address and whether the stream
        is confirmed.

        Raises:
            BadCookieError: a cookie was given that does not match (the reply port is set).
        """
        before = self._reply_to.get(sender, sender)
        target = self.set_reply_port(sender, reply_port)
        if before != target:  # a new reply port replaces the old stream (no duplicates)
            self._streams.pop(before, None)
        if cookie is not None and not self.cookie_ok(target, cookie):
            raise BadCookieError(
                f"cookie {cookie} does not match: send /notify 1 {target[1]} with the cookie "
                "of the latest /notify.cookie")
        if cookie is not None or not self.needs_cookie(sender):
            self.confirm(target)
            return target, True
        return target, False

    def unregister(self, sender: Address) -> bool:
        target = self._reply_to.pop(sender, (sender[0], sender[1]))
        return self._streams.pop(target, None) is not None

    def touch(self, sender: Address) -> None:
        """``sender`` sent something: its reply port is recently used and its confirmed stream
        (if any) is renewed (it keeps its place in the eviction order)."""
        if sender in self._reply_to:
            self._reply_to.move_to_end(sender)
        target = self._reply_to.get(sender, sender)
        if target in self._streams:
            self._streams[target] = self.clock()
            self._streams.move_to_end(target)

    def expire(self) -> list[Address]:
        """Drop streams not confirmed for longer than ``ttl``; returns their addresses."""
        limit = self.clock() - self.ttl
        old = [t for t, seen in self._streams.items() if seen < limit]
        for target in old:
            del self._streams[target]
        return old

    def reply_address(self, sender: Address) -> Address:
        """Where replies to ``sender``'s commands go."""
        return self._reply_to.get(sender, sender)

    def notified(self) -> list[Address]:
        """Addresses of all confirmed, unexpired streams."""
        self.expire()
        return list(self._streams)

    def __len__(self) -> int:
        self.expire()
        return len(self._streams)
