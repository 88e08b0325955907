"""Who gets replies and notifications (scsynth's ``/notify``).

Max's ``[udpsend]`` and Pd's ``[netsend -u -b]`` send from another port than the one their receiver
listens on, so a client may register an explicit reply port; replies to anything that sender sends
then go there.
"""

from __future__ import annotations

Address = tuple[str, int]


class Clients:
    """Registered clients: sender address → reply address."""

    def __init__(self) -> None:
        self._reply_to: dict[Address, Address] = {}

    def register(self, sender: Address, reply_port: int | None = None) -> Address:
        """Register ``sender`` for notifications; returns the address replies will go to.

        Registering again replaces the earlier reply port (no duplicate notifications).
        """
        target = (sender[0], reply_port or sender[1])
        self._reply_to[sender] = target
        return target

    def unregister(self, sender: Address) -> bool:
        return self._reply_to.pop(sender, None) is not None

    def reply_address(self, sender: Address) -> Address:
        """Where replies to ``sender``'s commands go."""
        return self._reply_to.get(sender, sender)

    def notified(self) -> list[Address]:
        """Distinct reply addresses of all registered clients."""
        return list(dict.fromkeys(self._reply_to.values()))

    def __len__(self) -> int:
        return len(self._reply_to)
