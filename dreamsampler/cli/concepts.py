"""``dreamsampler concepts list|show NAME``: the trained concepts in the concepts folder."""

from __future__ import annotations

import argparse
import sys

import yaml

from dreamsampler.cli.common import config_from_args
from dreamsampler.cli.train import add_model_args


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from dreamsampler.engine.concepts import scan_concepts

    config = config_from_args(args)
    metas, errors = scan_concepts(config.concepts_dir)
    table = Table(title=str(config.concepts_dir))
    for column in ("name", "method", "token", "base model", "steps", "created"):
        table.add_column(column)
    for m in metas:
        table.add_row(m.name, m.method, m.placeholder_token, m.base_model,
                      str(m.training.get("steps", "")), m.created[:19])
    console = Console()
    console.print(table)
    for err in errors:
        console.print(f"[red]refused[/red] {err}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from dreamsampler.engine.concepts import ConceptError, concept_dir, read_concept

    config = config_from_args(args)
    try:
        meta = read_concept(concept_dir(config.concepts_dir, args.name))
    except ConceptError as exc:
        print(f"dreamsampler: {exc}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(meta.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("concepts", help="list or show the trained concepts")
    commands = p.add_subparsers(dest="concepts_command", required=True)
    q = commands.add_parser("list", help="every concept in the concepts folder")
    add_model_args(q)
    q.set_defaults(func=_cmd_list)
    q = commands.add_parser("show", help="one concept's concept.yaml")
    q.add_argument("name")
    add_model_args(q)
    q.set_defaults(func=_cmd_show)
