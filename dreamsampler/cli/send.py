"""``dreamsampler send``: one OSC message to a server, its replies printed."""

from __future__ import annotations

import argparse
import sys

from dreamsampler.client import OscClient, is_final_for, parse_cli_args


def _cmd_send(args: argparse.Namespace) -> int:
    with OscClient(args.host, args.port) as client:
        client.send(args.address, *parse_cli_args(args.args))
        try:
            replies = client.wait_for(is_final_for(args.address), args.timeout)
        except TimeoutError as exc:
            print(f"timeout: {exc}", file=sys.stderr)
            return 2
    for reply in replies:
        print(reply)
    return 1 if replies[-1].address == "/fail" else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("send", help="send one OSC message to a server and print the replies")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the reply")
    p.add_argument("address", help="OSC address, e.g. /gen")
    p.add_argument("args", nargs="*", help="arguments; numbers are sent as int or float")
    p.set_defaults(func=_cmd_send)
