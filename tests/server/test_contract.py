"""The OSC contract: lenient parsing for Max/Pd, and the docs generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dreamsampler.server.contract import COMMANDS, PARAMS, REPLIES, ContractError, markdown

ROOT = Path(__file__).resolve().parents[2]


def test_docs_are_generated_from_the_contract() -> None:
    assert (ROOT / "docs" / "osc.md").read_text() == markdown() + "\n", (
        "docs/osc.md is stale: run python -m dreamsampler.server.contract"
    )


def test_every_address_and_reply_is_documented() -> None:
    text = markdown()
    for address in [*COMMANDS, *REPLIES]:
        assert f"`{address}" in text


@pytest.mark.parametrize(
    ("atoms", "expected"),
    [
        (["warm analog bass", "seed", 7], {"prompt": "warm analog bass", "seed": 7}),
        (["warm", "analog", "bass", "seed", 7.0], {"prompt": "warm analog bass", "seed": 7}),
        (["808", "drums"], {"prompt": "808 drums"}),
        ([808.0, "drums", "steps", 4.0], {"prompt": "808 drums", "num_inference_steps": 4}),
        (["a", "seed", "pod", "seed", 3], {"prompt": "a seed pod", "seed": 3}),
        (["x", "guidance", 3], {"prompt": "x", "guidance_scale": 3.0}),
        (["x", "duration", 0.3], {"prompt": "x", "duration": 0.3}),
        (["kick", "and", "bass", "seed"], {"prompt": "kick and bass seed"}),
        (["a", "pluck", "lora", "plk", 0.7, "seed", 2, "lora", "twang", 0.5],
         {"prompt": "a pluck", "loras": (("plk", 0.7), ("twang", 0.5)), "seed": 2}),
        (["a", "lora", "pad", "lora", "plk", 1], {"prompt": "a lora pad",
                                                  "loras": (("plk", 1.0),)}),
    ],
)
def test_gen_parsing_is_lenient(atoms: list[object], expected: dict[str, object]) -> None:
    assert COMMANDS["/gen"].parse(atoms) == expected


@pytest.mark.parametrize(
    ("atoms", "message"),
    [
        ([], "missing prompt"),
        (["x", "seed", "abc"], "seed: expected int"),
        (["x", "seed", 1.5], "expected an integer"),
        (["x", "seed", 1, "colour", "red"], "unknown option 'colour'"),
        (["x", "steps", float("nan")], "finite"),
    ],
)
def test_gen_parse_errors(atoms: list[object], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        COMMANDS["/gen"].parse(atoms)


def test_params_cover_the_session() -> None:
    from dataclasses import fields

    from dreamsampler.server.session import Session

    session_fields = {f.name for f in fields(Session)}
    assert {p.target for p in PARAMS.values()} <= session_fields


@pytest.mark.parametrize(
    ("address", "atoms", "expected"),
    [
        ("/continue", ["in.wav", 2, "a", "fill", "unit", "bars"],
         {"input_path": "in.wav", "continuation": 2.0, "prompt": "a fill", "unit": "bars"}),
        ("/continue", ["in.wav", 2, "seed", 3], {"input_path": "in.wav", "continuation": 2.0,
                                                 "seed": 3}),  # the prompt is optional
        ("/inpaint", ["in.wav", 0.5, 1, "snare", "lora", "plk", 1],
         {"input_path": "in.wav", "mask_start": 0.5, "mask_end": 1.0, "prompt": "snare",
          "loras": (("plk", 1.0),)}),
    ],
)
def test_region_commands_parse(address: str, atoms: list[object],
                               expected: dict[str, object]) -> None:
    assert COMMANDS[address].parse(atoms) == expected


@pytest.mark.parametrize(
    ("atoms", "message"),
    [
        (["x", "lora", "plk", "loud"], "/gen lora weight: expected float"),
        (["x", "lora", "plk", 3.0], "above the maximum"),
        (["x", "seed", 1, "lora", "plk"], "option lora needs s:lora f:weight"),
    ],
)
def test_lora_option_errors(atoms: list[object], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        COMMANDS["/gen"].parse(atoms)
