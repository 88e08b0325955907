"""Who gets replies and notifications (scsynth's ``/notify``), bounded.

Max's ``[udpsend]`` and Pd's ``[netsend -u -b]`` send from another port than the one their receiver
listens on, so a client may register an explicit reply port; replies to anything that sender sends
then go there.

UDP senders can be spoofed, so registrations are bounded: at most ``max_clients`` at once (more
are refused with ``/fail``; registered clients keep theirs), and a registration expires after
``ttl`` seconds in which its sender sent nothing (any command renews it; ``/notify 1`` again is
the usual keep-alive). See docs/hardening.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dreamsampler.engine.request import RequestError

Address = tuple[str, int]

MAX_CLIENTS = 64
"""Registrations held at once, by default."""
CLIENT_TTL = 3600.0
"""Seconds without a message from a registered sender before its registration expires."""


class TooManyClientsError(RequestError):
    """``/notify 1`` from a new sender while ``max_clients`` are registered."""


class Clients:
    """Registered clients: sender address → reply address, bounded in number and age.

    Args:
        max_clients: registrations held at once.
        ttl: seconds without a message from the sender before a registration expires.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, max_clients: int = MAX_CLIENTS, ttl: float = CLIENT_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_clients = max_clients
        self.ttl = ttl
        self.clock = clock
        self._reply_to: dict[Address, Address] = {}
        self._seen: dict[Address, float] = {}

    def register(self, sender: Address, reply_port: int | None = None) -> Address:
        """Register ``sender`` for notifications; returns the address replies will go to.

        Registering again replaces the earlier reply port (no duplicate notifications) and
        renews the registration.

        Raises:
            TooManyClientsError: ``max_clients`` other senders are registered.
        """
        self.expire()
        if sender not in self._reply_to and len(self._reply_to) >= self.max_clients:
            raise TooManyClientsError(
                f"too many clients registered ({self.max_clients}); unregister one with "
                f"/notify 0 or wait {self.ttl:g} s for idle ones to expire")
        target = (sender[0], reply_port or sender[1])
        self._reply_to[sender] = target
        self._seen[sender] = self.clock()
        return target

    def unregister(self, sender: Address) -> bool:
        self._seen.pop(sender, None)
        return self._reply_to.pop(sender, None) is not None

    def touch(self, sender: Address) -> None:
        """``sender`` sent something: renew its registration (if it has one)."""
        if sender in self._seen:
            self._seen[sender] = self.clock()

    def expire(self) -> list[Address]:
        """Drop registrations idle for longer than ``ttl``; returns their senders."""
        limit = self.clock() - self.ttl
        old = [s for s, seen in self._seen.items() if seen < limit]
        for sender in old:
            self.unregister(sender)
        return old

    def reply_address(self, sender: Address) -> Address:
        """Where replies to ``sender``'s commands go."""
        return self._reply_to.get(sender, sender)

    def notified(self) -> list[Address]:
        """Distinct reply addresses of all registered (unexpired) clients."""
        self.expire()
        return list(dict.fromkeys(self._reply_to.values()))

    def __len__(self) -> int:
        self.expire()
        return len(self._reply_to)
