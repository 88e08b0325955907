"""``dreamsampler doctor``: check a running server from the outside, over OSC, like a client would.

Required checks (a failure makes the exit status 1): the server answers ``/version``, its model is
loaded (``/status.reply``) and its output folder is writable. Informational checks: version match,
queue, tempo (tempo, its source and audio underruns, read from ``/status.reply`` by field name),
OSCQuery discovery, and the loaded concepts (``/concept/list``), MIDI inputs (``/midi/ports``) and
audio output devices (``/audio/devices``). A server too old to answer one of them gets "not
available" in that row.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dreamsampler import __version__
from dreamsampler.client import OscClient, Reply, is_final_for
from dreamsampler.server.contract import COMMANDS, REPLIES

OK, WARN, FAIL, NA = "ok", "warn", "FAIL", "n/a"

#: informational queries: (row name, query address, what an empty reply means)
OPTIONAL_QUERIES = (
    ("concepts", "/concept/list", "none loaded"),
    ("MIDI ports", "/midi/ports", "none configured"),
    ("audio devices", "/audio/devices", "no output device (clips still go to the folder)"),
)
#: the suffix /midi.ports puts on a configured input no port matches
MISSING = " (missing)"


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table."""

    name: str
    state: str
    detail: str
    required: bool = False

    @property
    def failed(self) -> bool:
        return self.required and self.state == FAIL


def _final_for(address: str) -> Callable[[Reply], bool]:
    """The reply that ends ``address``: its /done or /fail, or a reply the contract declares."""
    declared = {r.split()[0] for r in COMMANDS[address].replies} - {"/done", "/fail"}
    base = is_final_for(address)
    return lambda reply: base(reply) or reply.address in declared


def _fields(reply: Reply) -> dict[str, Any]:
    names = [a.name for a in REPLIES[reply.address].args] if reply.address in REPLIES else []
    return dict(zip(names, reply.args, strict=False))


def _ask(client: OscClient, address: str, timeout: float) -> Reply:
    client.send(address)
    return client.wait_for(_final_for(address), timeout)[-1]


def run_checks(host: str, port: int, timeout: float) -> list[Check]:
    """Ask the server at ``host:port``; every check becomes a :class:`Check`."""
    checks: list[Check] = []
    with OscClient(host, port) as client:
        try:
            version = _ask(client, "/version", timeout)
        except (TimeoutError, OSError) as exc:
            reason = ("connection refused" if isinstance(exc, ConnectionRefusedError)
                      else f"no reply within {timeout:g} s")
            return [Check("server reachable", FAIL,
                          f"{host}:{port} (UDP): {reason}; is 'dreamsampler serve' running "
                          "there, on that port?", required=True)]
        checks.append(Check("server reachable", OK, f"{host}:{port} (UDP)", required=True))
        v = _fields(version)
        same = v.get("version") == __version__
        checks.append(Check("version", OK if same else WARN,
                            f"server {v.get('version')}, this client {__version__}"
                            + ("" if same else " (commands may differ)")))
        try:
            status = _fields(_ask(client, "/status", timeout))
        except (TimeoutError, OSError) as exc:
            return [*checks, Check("model loaded", FAIL, f"no /status reply: {exc}", True)]
        checks += _status_checks(status, v)
        checks.append(_discovery(host, status, port, timeout))
        for name, address, empty in OPTIONAL_QUERIES:
            checks.append(_optional(client, name, address, empty, timeout))
    return checks


def _status_checks(status: dict[str, Any], version: dict[str, Any]) -> list[Check]:
    model, rate = status.get("model"), status.get("sample_rate", 0)
    loaded = bool(model) and rate > 0
    where = f" on {status['device']}" if "device" in status else ""
    checks = [Check("model loaded", OK if loaded else FAIL,
                    f"{model} ({version.get('family', '?')}, {rate} Hz){where}", True)]
    if "output_writable" in status:
        writable = status["output_writable"] == 1
        checks.append(Check("output folder", OK if writable else FAIL,
                            f"{status['output_dir']}" + ("" if writable else ": NOT writable"),
                            True))
    else:
        checks.append(Check("output folder", NA, "not available (server too old to report it)"))
    running = status.get("running", -1)
    checks.append(Check("queue", OK, ("idle" if running == -1 else f"running job {running}")
                        + f", {status.get('queued', 0)} waiting, {status.get('jobs_done', 0)} "
                        f"done, {status.get('jobs_failed', 0)} failed, "
                        f"{status.get('clients', 0)} clients registered"))
    checks.append(_tempo(status))
    return checks


def _tempo(status: dict[str, Any]) -> Check:
    if "tempo" not in status:
        return Check("tempo", NA, "not available (server too old to report it)")
    underruns = status.get("underruns", 0)
    detail = (f"{status['tempo']:g} BPM ({status.get('tempo_source', '?')}), "
              f"{underruns} audio underruns" + (", jam on" if status.get("jam") else ""))
    return Check("tempo", WARN if underruns else OK, detail)


def _discovery(host: str, status: dict[str, Any], osc_port: int, timeout: float) -> Check:
    http_port = status.get("oscquery_port")
    if http_port is None:
        return Check("OSCQuery", NA, "not available (server too old to report it)")
    if not http_port:
        return Check("OSCQuery", WARN, "off on the server (serve without --no-oscquery)")
    url = f"http://{host}:{http_port}/?HOST_INFO"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            info = json.loads(response.read())
    except (OSError, ValueError) as exc:
        return Check("OSCQuery", WARN, f"{url}: {exc}")
    if info.get("OSC_PORT") != osc_port:
        return Check("OSCQuery", WARN, f"{url} names OSC port {info.get('OSC_PORT')}")
    return Check("OSCQuery", OK, f"http://{host}:{http_port}/ ({info.get('NAME')})")


def _optional(client: OscClient, name: str, address: str, empty: str, timeout: float) -> Check:
    """Ask ``address``; its reply's atoms are the row's detail. A ``/fail`` naming an unknown
    command (an older server) is "not available"; a MIDI input marked missing is a warning."""
    if address not in COMMANDS:
        return Check(name, NA, f"not available (no {address} in this version's contract)")
    try:
        reply = _ask(client, address, timeout)
    except (TimeoutError, OSError) as exc:
        return Check(name, WARN, f"{address}: {exc}")
    if reply.address == "/fail":
        message = str(reply.args[1]) if len(reply.args) > 1 else ""
        if message.startswith("unknown command"):
            return Check(name, NA, "not available (server too old to answer it)")
        return Check(name, WARN, f"{address}: {message}")
    args = [str(a) for a in (reply.args[1:] if reply.address == "/done" else reply.args)]
    missing = any(a.endswith(MISSING) for a in args)
    return Check(name, WARN if missing else OK, ", ".join(args) or empty)


def render(checks: list[Check], host: str, port: int) -> None:
    """Print the checks as a table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"dreamsampler doctor: {host}:{port}")
    table.add_column("check")
    table.add_column("state")
    table.add_column("detail", overflow="fold")
    colors = {OK: "green", WARN: "yellow", FAIL: "bold red", NA: "dim"}
    for check in checks:
        state = f"[{colors[check.state]}]{check.state}[/]"
        table.add_row(check.name + (" *" if check.required else ""), state, check.detail)
    console = Console()
    console.print(table)
    console.print("* required", style="dim")


def _cmd_doctor(args: argparse.Namespace) -> int:
    checks = run_checks(args.host, args.port, args.timeout)
    render(checks, args.host, args.port)
    return 1 if any(c.failed for c in checks) else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check a running server from the outside (over OSC)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for each reply")
    p.set_defaults(func=_cmd_doctor)
