"""The request schema (dreamsampler/schema.py): a new option is one declaration, and it then
appears, validated, in the OSC contract and messages, the session, presets, the config defaults,
OSCQuery and docs/osc.md; ranges agree everywhere; the session saves as a preset with every
field a preset takes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from dreamsampler import schema
from dreamsampler.config import Config, Defaults, defaults_model
from dreamsampler.engine.request import GenerationRequest, RequestError
from dreamsampler.server import contract, messages, oscquery
from dreamsampler.server.delivery import GenerationParams, params_type
from dreamsampler.server.preset_book import PresetBook
from dreamsampler.server.presets import Preset, preset_model
from dreamsampler.server.session import Session, resolve_seed, session_type

SWING = schema.Param("swing", "f", "swing of the off-beats", minimum=0, maximum=100,
                     unit="%", default=50.0,
                   takes=schema.GENERATE | {schema.SESSION, schema.PRESET, schema.CONFIG})
EXTENDED = (*schema.PARAMS, SWING)
"""The schema plus one new option: the only edit a new option needs."""


def test_a_new_option_is_one_schema_edit() -> None:
    commands = contract.build_commands(EXTENDED)
    # OSC: parsed and validated by every command that takes it
    for address, atoms in (("/gen", ["warm", "pad", "swing", 60]),
                           ("/transfer", ["in.wav", "warm", "pad", "swing", 60]),
                           ("/continue", ["in.wav", 2, "warm", "pad", "swing", 60])):
        assert commands[address].parse(atoms)["swing"] == 60.0
    with pytest.raises(contract.ContractError, match=r"swing -5 is below the minimum 0"):
        commands["/gen"].parse(["warm", "swing", -5])
    with pytest.raises(contract.ContractError, match=r"did you mean 'swing'"):
        commands["/gen"].parse(["warm", "swingg", 60])
    # the typed message and GenerationParams carry it
    gen = messages.generate_type("Gen", commands["/gen"])(prompt="warm", swing=60.0)
    params = params_type(EXTENDED)
    assert {"swing"} <= {f.name for f in dataclasses.fields(params)}
    assert gen.params.__func__  # a Generate: params() is derived from the fields
    # the session and /param/swing
    assert session_type(EXTENDED)().swing == 50.0  # type: ignore[attr-defined]
    assert commands["/param/swing"].parse([55])["swing"] == 55.0
    with pytest.raises(contract.ContractError, match="above the maximum"):
        commands["/param/swing"].parse([5000])
    # presets: a key, validated
    model = preset_model(EXTENDED)
    assert model.model_validate({"name": "p", "prompt": "x", "bars": 4, "swing": 60}).swing == 60
    assert model.model_validate({"name": "p", "prompt": "x", "bars": 4}).swing is None
    with pytest.raises(ValidationError, match="swing"):
        model.model_validate({"name": "p", "prompt": "x", "bars": 4, "swing": 500})
    # config defaults: a key with its default, validated
    defaults = defaults_model(EXTENDED)
    assert defaults().swing == 50.0  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="swing"):
        defaults(swing=101.0)
    # OSCQuery: the option is listed on /gen and /param/swing has its type and range
    tree = oscquery.namespace(commands, {})
    assert "swing" in oscquery.find(tree, "/gen")["DESCRIPTION"]
    node = oscquery.find(tree, "/param/swing")
    assert (node["TYPE"], node["RANGE"]) == ("f", [{"MIN": 0, "MAX": 100}])
    # docs/osc.md
    text = contract.markdown(commands)
    assert "  - `swing` (float): swing of the off-beats (range 0..100 %)" in text
    assert "### `/param/swing f:swing`" in text
    # the Max/Pd patches: with PATCH, a number box sent as the option, ranged by the contract
    from dreamsampler.clients import pd
    from dreamsampler.clients.spec import SPEC, resolve, schema_numbers

    boxed = (*schema.PARAMS, dataclasses.replace(SWING, takes=SWING.takes | {schema.PATCH}))
    resolved = resolve(dataclasses.replace(SPEC, numbers=schema_numbers(boxed)),
                       contract.build_commands(boxed))
    box = next(n for n in resolved.numbers if n.key == "swing")
    assert (box.label, box.type, box.minimum, box.maximum) == ("swing(%)", "f", 0, 100)
    assert box.commands == ("/gen", "/transfer", "/continue", "/inpaint")
    patch = pd.render(resolved)
    assert "swing(%) ds-swing" in patch and "swing \\$" in patch
    # and the shipped schema is untouched
    assert "swing" not in contract.COMMANDS["/gen"].parse(["warm", "pad"])
    assert "swing" not in [n.key for n in SPEC.numbers]


def test_ranges_agree_everywhere() -> None:
    """Each parameter's range is the same in OSC, presets, config and the engine request."""
    for p in schema.PARAMS:
        if p.minimum is None and p.maximum is None:
            continue
        for address in schema.GENERATE & p.takes:
            arg = contract.COMMANDS[address].option(p.osc_key)
            assert (arg.minimum, arg.maximum) == (p.minimum, p.maximum), (address, p.name)
        if schema.SESSION in p.takes:
            arg = contract.PARAMS[p.osc_key]
            assert (arg.minimum, arg.maximum) == (p.minimum, p.maximum), p.name
        for model, key in ((Preset, p.yaml_key), (Defaults, p.name)):
            field = model.model_fields.get(key)
            if field is None or (key == "seed" and model is Preset):  # a SeedPolicy
                continue
            bounds = {type(m).__name__: getattr(m, type(m).__name__.lower())
                      for m in field.metadata}
            assert (bounds.get("Ge"), bounds.get("Le")) == (p.minimum, p.maximum), (model, key)
    # the issue's example: lora_scale is -2..2 in OSC and in presets
    Preset.model_validate({"name": "p", "prompt": "x", "bars": 1, "lora_scale": -1.5})
    with pytest.raises(ValidationError):
        Preset.model_validate({"name": "p", "prompt": "x", "bars": 1, "lora_scale": 2.5})
    with pytest.raises(RequestError, match=r"lora_scale 2\.5 is above the maximum 2"):
        GenerationRequest(prompt="x", lora_scale=2.5)
    with pytest.raises(RequestError, match="scheduler must be one of"):
        GenerationRequest(prompt="x", scheduler="nope")


def test_names_are_the_request_fields() -> None:
    """Message fields, GenerationParams, Session and GenerationRequest use the request field
    names; only OSC keys and preset keys differ, as declared in the schema."""
    request_fields = {f.name for f in dataclasses.fields(GenerationRequest)}
    for p in schema.taken_by(schema.REQUEST):
        assert p.name in request_fields, p.name
    gp = {f.name for f in dataclasses.fields(GenerationParams)}
    assert {p.name for p in schema.generation_fields()} <= gp
    assert {"continuation", "mask_start", "mask_end"} <= gp
    assert {f.name for f in dataclasses.fields(messages.Continue)} >= {"continuation",
                                                                       "input_path"}
    assert {f.name for f in dataclasses.fields(messages.Inpaint)} >= {"mask_start", "mask_end"}
    assert {f.name for f in dataclasses.fields(Session)} == {
        p.name for p in schema.taken_by(schema.SESSION)}
    assert {p.target for p in contract.PARAMS.values()} <= {
        f.name for f in dataclasses.fields(Session)}


def test_seeds() -> None:
    import random

    rng = random.Random(5)
    unlocked = Session()
    locked = dataclasses.replace(Session(), seed=42, seed_lock=1)
    assert resolve_seed(7, unlocked) == 7
    assert resolve_seed(None, locked) == 42
    drawn = {resolve_seed(None, unlocked, rng) for _ in range(20)}
    assert len(drawn) == 20 and all(0 <= s <= schema.SEED_MAX for s in drawn)
    assert resolve_seed(-1, locked, random.Random(5)) == random.Random(5).randint(
        0, schema.SEED_MAX)
    with pytest.raises(RequestError, match="seed must be resolved"):
        GenerationRequest(prompt="x", seed=-1)


def _session(**values: Any) -> Any:
    return dataclasses.replace(Session(), **values)


def test_preset_save_keeps_every_session_field(tmp_path: Path) -> None:
    book = PresetBook(tmp_path)
    session = _session(prompt="a <pluck> loop", concept="pluck", scheduler="euler",
                       negative_prompt="hiss", num_inference_steps=12, guidance_scale=4.0,
                       lora_scale=-0.5, bars=2, seed=77, seed_lock=1)
    path = book.save_session("pluck loop", session)
    assert path == tmp_path / "pluck loop.yaml"
    job = book.job("pluck loop")
    preset_fields = {p.name for p in schema.taken_by(schema.PRESET)}
    for name in preset_fields & {f.name for f in dataclasses.fields(Session)}:
        if name in ("input_path", "strength", "duration"):
            continue  # no input clip: not a transfer; bars given: no seconds
        assert getattr(job.params, name) == getattr(session, name), name
    # an unlocked session's preset draws a fresh seed each time
    book.save_session("loose", _session(prompt="x", seed=3, seed_lock=0))
    assert book.get("loose").seed.mode == "random"
    # a transfer session keeps its input and strength, a seconds session its duration
    book.save_session("xfer", _session(prompt="x", input_path=str(tmp_path / "in.wav"),
                                       strength=0.3, duration=2.5))
    job = book.job("xfer")
    assert (job.transfer, job.params.strength, job.params.duration) == (True, 0.3, 2.5)


def test_config_defaults_reach_the_session() -> None:
    config = Config.model_validate({"defaults": {"seed": 9, "seed_lock": 1,
                                                 "num_inference_steps": 7}})
    session = Session.from_config(config)
    assert (session.seed, session.seed_lock, session.num_inference_steps) == (9, 1, 7)


def test_midi_params_and_request_replies_come_from_the_schema_and_contract() -> None:
    from dreamsampler.server.midi_edge import MIDI_PARAM_FIELDS
    from dreamsampler.server.midi_map import PARAM_RANGES

    for key, name in MIDI_PARAM_FIELDS.items():
        p = schema.by_name(name)
        assert p.osc_key == key and schema.SESSION in p.takes
        cc = PARAM_RANGES[key]  # a CC's default sweep lies inside the parameter's range
        assert p.minimum <= cc.min and cc.max <= p.maximum, key
    assert set(PARAM_RANGES) - set(MIDI_PARAM_FIELDS) == {"tempo", "volume"}
    assert messages.decode("/gen", ["x"]).replies == contract.COMMANDS["/gen"].replies
    assert messages.decode("/param/steps", [3]).replies == ("/done /param/steps i:steps",)


def test_loop_options_are_schema_params() -> None:
    """Issue 18's options (bpm, key, meter, conform, side) are schema entries: /conform takes
    its options from the schema, side is a closed set checked at parse, bpm's range is the
    request's and the preset's, a preset's key and meter are normalised."""
    conform = contract.COMMANDS["/conform"]
    assert ({o.name for o in conform.options} == {p.osc_key for p in schema.taken_by(
        schema.CONFORM)} == {"bars", "id", "name", "bpm", "key", "meter"})
    assert conform.parse(["loop.wav", "bpm", 120, "key", "G minor"]) == {
        "input_path": "loop.wav", "bpm": 120.0, "key": "G minor"}
    with pytest.raises(contract.ContractError, match="below the minimum 20"):
        conform.parse(["loop.wav", "bpm", 5])
    cont = contract.COMMANDS["/continue"]
    assert cont.parse(["in.wav", 1, "x", "side", "Before"])["side"] == "before"
    with pytest.raises(contract.ContractError, match="did you mean 'before'"):
        cont.parse(["in.wav", 1, "x", "side", "befor"])
    assert "side" not in {o.name for o in contract.COMMANDS["/gen"].options}
    assert {"key", "meter", "conform"} <= set(contract.PARAMS)
    with pytest.raises(RequestError, match="bpm 10 is below the minimum 20"):
        GenerationRequest(prompt="x", bpm=10.0)
    preset = Preset.model_validate({"name": "p", "prompt": "x", "bars": 4, "bpm": 96,
                                    "key": "am", "meter": "6 / 8", "conform": True})
    assert (preset.bpm, preset.key, preset.meter, preset.conform) == (  # type: ignore[attr-defined]
        96.0, "A minor", "6/8", 1)
    with pytest.raises(ValidationError, match="bpm"):
        Preset.model_validate({"name": "p", "prompt": "x", "bars": 4, "bpm": 5})
