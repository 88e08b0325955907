"""``dreamsampler config``: which config file is in effect, and ``--init`` to write one."""

from __future__ import annotations

import argparse
from pathlib import Path

from dreamsampler.config import (
    CONFIG_NAME,
    describe_source,
    find_config,
    user_config_dir,
    write_default_config,
)


def _cmd_config(args: argparse.Namespace) -> int:
    if args.init:
        target = args.path or user_config_dir() / CONFIG_NAME
        if target.exists() and not args.force:
            print(f"dreamsampler: {target} exists (--force replaces it)")
            return 1
        write_default_config(target)
        print(target)
        return 0
    print(describe_source(find_config(args.path)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config", help="show which config file is in effect; --init writes one",
        description=f"Without options: print the config file in effect (./{CONFIG_NAME}, else "
        f"{CONFIG_NAME} in the user config folder, else the built-in defaults). --init writes "
        "every setting with its default and a comment, to edit.")
    p.add_argument("--init", action="store_true",
                   help=f"write the defaults to {user_config_dir() / CONFIG_NAME} (or PATH)")
    p.add_argument("--force", action="store_true", help="with --init: replace an existing file")
    p.add_argument("path", nargs="?", type=Path, help="a config file instead of the search")
    p.set_defaults(func=_cmd_config)
