"""``dreamsampler send``: one OSC message to a server, its replies printed.

Before the message goes out, ``/version`` checks within ``--connect-timeout`` seconds that a server
answers (UDP has no connection: without this, a wrong port meant waiting ``--timeout`` in silence).
A generation (a command whose contract replies include ``/queued``) registers for ``/notify`` first
and shows the job's progress until its ``/done`` or ``/fail``: a progress bar on a terminal, one
line per notification otherwise. A prompt atom that looks like a misspelt option key and that the
server reads as prompt text (``/gen x negativ noise``) is sent as it is, with a warning; a misspelt
numeric key followed by a number (``/gen x sed 3``) the server refuses itself (``/fail`` with a
did-you-mean).
"""

from __future__ import annotations

import argparse
import difflib
import sys
import time
from collections.abc import Sequence
from typing import Any

from dreamsampler.client import OscClient, Reply, is_final_for, parse_cli_args
from dreamsampler.server.contract import COMMANDS, TYPED_REPLIES, ContractError

#: how close (difflib ratio) a prompt atom must be to an option key to be called a misspelling
MISSPELT_CUTOFF = 0.75
JOB_NOTIFICATIONS = ("/job.started", "/progress", "/job.ended")


def misspelt_keys(address: str, atoms: Sequence[Any]) -> list[tuple[str, str]]:
    """``(atom, key)`` for each atom that the server will read as prompt text but that looks like
    a misspelt option key of ``address`` and is followed by a valid value for that key.

    The first atom is never a key (a prompt needs one word), nor is a word that is a key.
    """
    message = COMMANDS.get(address)
    if message is None or not message.options:
        return []
    keys = [o.name for o in message.options]
    found = []
    for i in range(1, len(atoms) - 1):
        atom = atoms[i]
        if not isinstance(atom, str) or atom in keys:
            continue
        if message.refuses_near_miss(atoms, i):
            continue  # the server answers /fail with a did-you-mean itself
        for key in difflib.get_close_matches(atom, keys, n=1, cutoff=MISSPELT_CUTOFF):
            option = message.option(key)
            try:
                if option is not None:
                    option.coerce(atoms[i + 1], address)
            except ContractError:
                continue
            found.append((atom, key))
    return found


def _is_job(address: str) -> bool:
    message = COMMANDS.get(address)
    return message is not None and any(r.startswith("/queued") for r in message.replies)


def _server_answers(client: OscClient, host: str, port: int, timeout: float) -> str | None:
    """``None`` when the server answers ``/version``, else why not (with a hint)."""
    try:
        client.request("/version", timeout=timeout)
    except TimeoutError:
        reason = f"no reply within {timeout:g} s"
    except ConnectionRefusedError:
        reason = "connection refused"
    except OSError as exc:
        reason = exc.strerror or str(exc)
    else:
        return None
    return (f"{host}:{port} (UDP): {reason}; is 'dreamsampler serve' running there, on that port? "
            "(dreamsampler doctor --port N checks a server)")


class _Display:
    """Shows replies: a rich progress bar on a terminal, plain lines otherwise."""

    def __init__(self, terminal: bool) -> None:
        self.progress: Any = None
        self.task: Any = None
        if terminal:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     TaskProgressColumn(), transient=True)
            self.progress.start()

    def show(self, reply: Reply) -> None:
        if self.progress is None:
            print(reply, flush=True)
            return
        if reply.address == "/queued":
            self.task = self.progress.add_task(f"job {reply.args[0]} queued", total=1.0)
        elif self.task is not None and reply.address == "/job.started":
            self.progress.update(self.task, description=f"job {reply.args[0]} denoising")
        elif self.task is not None and reply.address == "/progress":
            self.progress.update(self.task, completed=float(reply.args[1]))
        if reply.address not in JOB_NOTIFICATIONS:
            self.progress.console.print(str(reply), markup=False, highlight=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _wait_for_job(client: OscClient, address: str, display: _Display,
                  timeout: float) -> Reply | None:
    """Show the job's replies until its ``/done``/``/fail``; ``None`` after ``timeout`` seconds
    without any reply about it."""
    final = is_final_for(address)
    job_id: int | None = None
    last = time.monotonic()
    while time.monotonic() - last < timeout:
        reply = client.receive(0.25)
        if reply is None:
            continue
        if reply.address == "/queued" and job_id is None:
            job_id = int(reply.args[0])
        elif reply.address in JOB_NOTIFICATIONS and (not reply.args or reply.args[0] != job_id):
            continue  # another client's job (notifications go to every registered client)
        elif reply.address == "/done" and reply.args[:1] == ("/notify",):
            continue
        last = time.monotonic()
        display.show(reply)
        if final(reply):
            return reply
    return None


def _cmd_send(args: argparse.Namespace) -> int:
    atoms = parse_cli_args(args.args)
    for atom, key in misspelt_keys(args.address, atoms):
        print(f"warning: {atom!r} is sent as part of the prompt; did you mean the option "
              f"{key!r}? (options are 'key value' pairs after the prompt)", file=sys.stderr)
    with OscClient(args.host, args.port) as client:
        if args.connect_timeout > 0:
            problem = _server_answers(client, args.host, args.port, args.connect_timeout)
            if problem is not None:
                print(f"dreamsampler send: {problem}", file=sys.stderr)
                return 2
        if not _is_job(args.address):
            client.send(args.address, *atoms)
            try:
                replies = client.wait_for(is_final_for(args.address), args.timeout)
            except TimeoutError as exc:
                print(f"timeout: {exc}", file=sys.stderr)
                return 2
            for reply in replies:
                typed = TYPED_REPLIES.get(reply.address)
                print(typed.from_atoms(reply.args).labelled() if typed else reply)
            return 1 if replies[-1].address == "/fail" else 0
        client.request("/notify", 1, timeout=max(args.connect_timeout, 1.0))
        display = _Display(args.progress if args.progress is not None else sys.stdout.isatty())
        try:
            client.send(args.address, *atoms)
            reply = _wait_for_job(client, args.address, display, args.timeout)
        finally:
            display.close()
            client.send("/notify", 0)
    if reply is None:
        print(f"timeout: no reply about the job within {args.timeout:g} s", file=sys.stderr)
        return 2
    return 1 if reply.address == "/fail" else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "send", help="send one OSC message to a server and print the replies",
        description="Send one OSC message and print the replies. A generation (/gen, /transfer, "
        "/trigger, /preset/trigger) shows its progress until /done or /fail.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="server address")
    p.add_argument("--port", type=int, default=9000, help="server OSC (UDP) port")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for a reply (for a job: without any news of it)")
    p.add_argument("--connect-timeout", type=float, default=3.0,
                   help="seconds the server has to answer /version first; 0 skips the check")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar for jobs (default: when stdout is a terminal)")
    p.add_argument("address", help="OSC address, e.g. /gen")
    p.add_argument("args", nargs="*", help="arguments; numbers are sent as int or float")
    p.set_defaults(func=_cmd_send)
