"""Port problems in a user's words: which port, which protocol, and the option that changes it.

The OSC (UDP) port is strict: a client is configured with it, so a busy one stops start-up. The
command line checks it before the model loads (:func:`check_osc_port`), so a busy port costs a
second, not a model load. (The OSCQuery HTTP port is discovered, so it falls back to a free one:
see :class:`dreamsampler.server.oscquery.OscQueryServer`.)
"""

from __future__ import annotations

import errno
import socket


def osc_port_problem(host: str, port: int, exc: OSError) -> str:
    """What to tell a user whose OSC port cannot be bound (names the port and ``--port``)."""
    if exc.errno == errno.EADDRINUSE:
        return (f"OSC port {port} on {host} (UDP) is already in use (another 'dreamsampler "
                f"serve'?): choose another with --port N, or --port 0 for a free one")
    return f"OSC port {port} on {host} (UDP): {exc.strerror or exc} (see --host and --port)"


def check_osc_port(host: str, port: int) -> None:
    """Bind and release ``host:port`` (UDP) to find a busy port before anything slow happens.

    Raises:
        OSError: the port cannot be bound; the message is :func:`osc_port_problem`'s.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)
    except OSError as exc:
        raise OSError(osc_port_problem(host, port, exc)) from None
