"""``dreamsampler patches``: regenerate the Max, Live and Pd client patches from the contract."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_patches(args: argparse.Namespace) -> int:
    from dreamsampler.clients import generate, repository_root, stale
    from dreamsampler.clients.spec import resolve

    root = args.root or repository_root()
    spec = resolve()  # logs a warning for each control the contract does not have yet
    if args.check:
        outdated = stale(root, spec)
        for relative in outdated:
            print(f"out of date: {root / relative}", file=sys.stderr)
        if outdated:
            print("run 'dreamsampler patches' to regenerate", file=sys.stderr)
        return 1 if outdated else 0
    for path in generate(root, spec):
        print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("patches", help="regenerate the Max/Live/Pd client patches from the "
                       "OSC contract")
    p.add_argument("--root", type=Path,
                   help="folder that receives max_patches/ and pd_patches/ (default: the "
                   "source checkout)")
    p.add_argument("--check", action="store_true",
                   help="only check that the files are up to date (exit 1 if not)")
    p.set_defaults(func=_cmd_patches)
