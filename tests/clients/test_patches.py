"""Checks of the generated Max, Live and Pd patches, read back from the checked-in files.

Max does not run here: the Max files are parsed, every line is checked against the object tables,
and the patch is *executed* by a small interpreter (:mod:`tests.clients.maxsim`); what reaches
``[udpsend]`` is parsed by the contract itself. The Pd file gets the same static checks here and
runs for real in ``test_pd_live.py``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from dreamsampler.clients import FILES, maxpat, pd, render_all, repository_root, stale
from dreamsampler.clients.objects import max_counts, pd_atom_counts, pd_object_counts
from dreamsampler.clients.spec import SPEC, SpecError, resolve
from dreamsampler.server.contract import COMMANDS, REPLIES, Arg, Message
from tests.clients.maxsim import MaxSim, atoms

ROOT = repository_root()


def _maxpat() -> dict[str, Any]:
    return json.loads((ROOT / FILES[0]).read_text(encoding="utf-8"))


def _amxd() -> tuple[dict[str, bytes], dict[str, Any]]:
    return maxpat.read_amxd((ROOT / FILES[1]).read_bytes())


def _patchers() -> list[tuple[str, dict[str, Any]]]:
    return [("maxpat", _maxpat()), ("amxd", _amxd()[1])]


def _boxes(patcher: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["box"]["id"]: b["box"] for b in patcher["patcher"]["boxes"]}


# -- consistency with the contract -----------------------------------------------------------------


def test_checked_in_files_equal_a_fresh_generation() -> None:
    assert stale(ROOT) == [], "run 'dreamsampler patches' and commit the result"


def test_generation_is_deterministic() -> None:
    assert render_all() == render_all()


def test_every_spec_entry_resolves_against_the_contract() -> None:
    spec = resolve()
    assert spec.skipped == ()
    keys = [n.key for n in spec.numbers]
    assert keys == ["seed", "steps", "guidance", "duration", "bars", "strength"], (
        "bars sits next to duration: one-shots in seconds, loops in bars")
    bars = next(n for n in spec.numbers if n.key == "bars")
    assert (bars.type, bars.minimum, bars.default) == ("i", 0, 0), "0 = use duration"
    strength = next(n for n in spec.numbers if n.key == "strength")
    assert strength.commands == ("/transfer",), "strength is not an option of /gen"
    for number in spec.numbers:
        arg = next(COMMANDS[c].option(number.key) for c in number.commands)
        assert arg is not None and number.type == arg.type
    assert spec.concepts is not None and spec.presets is not None
    assert (spec.play, spec.stop, spec.jam, spec.tempo) == ("/play", "/stop", "/jam", "/tempo")
    assert set(spec.sent_addresses) <= set(COMMANDS)
    assert set(spec.routed_replies) <= set(REPLIES)
    assert spec.delivering == ("/gen", "/transfer", "/continue", "/inpaint", "/preset/trigger")
    assert [n.key for n in spec.region_numbers] == ["extend", "from", "to"]
    assert spec.numbers_for("/continue") == spec.numbers[:3], "seed, steps, guidance"


def test_missing_core_command_is_an_error() -> None:
    commands = {k: v for k, v in COMMANDS.items() if k != "/cancel"}
    with pytest.raises(SpecError, match="/cancel"):
        resolve(SPEC, commands)


def _older_contract() -> tuple[dict[str, Message], dict[str, Message]]:
    """The contract before the concept and live work: no concepts, presets, playback, tempo or
    bars, and a /play that (hypothetically) takes no quantum."""
    commands = {k: v for k, v in COMMANDS.items()
                if k not in ("/concept/list", "/preset/list", "/stop", "/jam", "/tempo")}
    for address in ("/gen", "/transfer"):
        m = commands[address]
        commands[address] = dataclasses.replace(
            m, options=tuple(o for o in m.options if o.name not in ("bars", "concept")))
    commands["/play"] = Message("/play", (Arg("job_id", "i", "job"),), "play")
    replies = {k: v for k, v in REPLIES.items() if k not in ("/concept.list", "/preset.list")}
    return commands, replies


def test_controls_the_contract_lacks_are_skipped_and_reported() -> None:
    commands, replies = _older_contract()
    spec = resolve(SPEC, commands, replies)
    assert [n.key for n in spec.numbers] == ["seed", "steps", "guidance", "duration", "strength"]
    assert spec.concepts is None and spec.presets is None and spec.tempo is None
    assert (spec.play, spec.stop, spec.jam) == (None, None, None)
    skipped = " | ".join(spec.skipped)
    for what in ("number 'bars'", "concept menu", "preset menu", "Play button", "Stop button",
                 "Jam button", "tempo follower", "/play i:job_id does not take ['i', 'f']"):
        assert what in skipped, (what, skipped)
    # the patches still build and work without them
    sim = MaxSim(maxpat.build(spec, device=True).patcher())
    sim.loadbang()
    assert [a for a, _ in sim.sent] == ["/notify"]
    sim.click(sim.button("Generate"))
    commands["/gen"].parse(sim.sent[-1][1])
    assert not [b for b in sim.boxes.values() if b.maxclass == "live.menu"]
    boxes, _ = pd.parse(pd.render(spec))
    assert not any(w in ("ds-concept", "ds-play", "ds-jam", "ds-bars") for b in boxes
                   for w in b.words)


# -- Max and Live: structure -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["maxpat", "amxd"])
def test_max_boxes_and_lines_are_valid(name: str) -> None:
    patcher = dict(_patchers())[name]
    boxes = _boxes(patcher)
    assert len(boxes) == len(patcher["patcher"]["boxes"]), "box ids are unique"
    for box in boxes.values():
        inlets, outlets = max_counts(box["maxclass"], box.get("text", ""))
        assert (box["numinlets"], box["numoutlets"]) == (inlets, outlets), box
        assert len(box["outlettype"]) == outlets
    assert patcher["patcher"]["lines"], "the patch is wired"
    for line in patcher["patcher"]["lines"]:
        (src, outlet), (dst, inlet) = (line["patchline"]["source"],
                                       line["patchline"]["destination"])
        assert src in boxes and dst in boxes, line
        assert 0 <= outlet < boxes[src]["numoutlets"], (boxes[src], outlet)
        assert 0 <= inlet < boxes[dst]["numinlets"], (boxes[dst], inlet)


@pytest.mark.parametrize("name", ["maxpat", "amxd"])
def test_max_addresses_are_in_the_contract(name: str) -> None:
    """Every address literal in a message box or [prepend /...] is a command; every routed
    address is a reply."""
    boxes = _boxes(dict(_patchers())[name])
    sent, routed = set(), set()
    for box in boxes.values():
        words = box.get("text", "").split()
        if box["maxclass"] == "message" and words and words[0].startswith("/"):
            sent.add(words[0])
            if words[0] in COMMANDS and not any("$" in w for w in words):
                COMMANDS[words[0]].parse(atoms(" ".join(words[1:])))  # a literal message
        if box["maxclass"] == "newobj" and words[:1] == ["prepend"] and len(words) > 1 \
                and words[1].startswith("/"):
            sent.add(words[1])
        if box["maxclass"] == "newobj" and words[:1] == ["route"] and "/done" in words:
            routed.update(words[1:])  # the reply router (not the [route /gen /transfer] after it)
    assert sent and sent <= set(COMMANDS), sent - set(COMMANDS)
    assert {"/queued", "/progress", "/done", "/fail"} <= routed <= set(REPLIES)
    udpsend = [b for b in boxes.values() if b.get("text", "").startswith("udpsend")]
    udpreceive = [b for b in boxes.values() if b.get("text", "").startswith("udpreceive")]
    assert [b["text"] for b in udpsend] == ["udpsend 127.0.0.1 9000"]
    assert [b["text"] for b in udpreceive] == ["udpreceive 9001"]


def test_amxd_header_and_device_specifics() -> None:
    data = (ROOT / FILES[1]).read_bytes()
    assert data[:4] == b"ampf" and data[8:12] == b"aaaa"
    chunks, patcher = _amxd()
    assert list(chunks) == ["ampf", "meta", "ptch"]
    assert chunks["ptch"].endswith(b"\x00")
    boxes = _boxes(patcher)
    texts = {b.get("text", "") for b in boxes.values()}
    assert {"deferlow", "live.path", "plugout~", "plugin~", f"js {maxpat.CLIP_SCRIPT}"} <= texts
    assert "dac~" not in texts and "buffer~ ---ds-clip" in texts
    assert not [b for b in boxes.values() if b["maxclass"] == "ezdac~"], "Live runs the DSP"
    assert patcher["patcher"]["dependency_cache"][0]["name"] == maxpat.CLIP_SCRIPT
    assert (ROOT / "max_patches" / maxpat.CLIP_SCRIPT).is_file(), "shipped next to the device"
    # [udpreceive] → [deferlow] → [route ...]: nothing else hangs off udpreceive
    receive = next(i for i, b in boxes.items() if b.get("text", "").startswith("udpreceive"))
    targets = [boxes[ln["patchline"]["destination"][0]]["text"]
               for ln in patcher["patcher"]["lines"] if ln["patchline"]["source"][0] == receive]
    assert targets == ["deferlow"]
    with pytest.raises(ValueError, match="claims"):
        maxpat.read_amxd(data[:-10])


# -- Max and Live: executed ------------------------------------------------------------------------


@pytest.fixture(params=["maxpat", "amxd"])
def sim(request: pytest.FixtureRequest) -> MaxSim:
    sim = MaxSim(dict(_patchers())[request.param])
    sim.loadbang()
    return sim


def test_max_registers_its_reply_port_at_load(sim: MaxSim) -> None:
    assert sim.sent[0] == ("/notify", [1, 9001])
    COMMANDS["/notify"].parse(sim.sent[0][1])


def test_max_generate_sends_a_contract_message(sim: MaxSim) -> None:
    sim.type_text(sim.find("textedit"), "warm analog bass")  # Max splits it into atoms
    sim.receive(sim.param("Seed lock"), 0, [1])  # lock the seed
    sim.receive(sim.param("Seed"), 0, [7])
    sim.receive(sim.param("Steps"), 0, [2.7])  # an int parameter truncates
    sim.receive(sim.param("Duration"), 0, [1.5])
    sim.sent.clear()
    sim.click(sim.button("Generate"))
    assert len(sim.sent) == 1
    address, args = sim.sent[0]
    assert address == "/gen" and args[:3] == ["warm", "analog", "bass"]
    values = COMMANDS[address].parse(args)
    assert values == {"prompt": "warm analog bass", "seed": 7, "num_inference_steps": 2,
                      "guidance_scale": 2.5, "duration": 1.5, "bars": 0}
    sim.receive(sim.param("Bars"), 0, [4])
    sim.click(sim.button("Generate"))
    values = COMMANDS["/gen"].parse(sim.sent[-1][1])
    assert (values["bars"], values["duration"]) == (4, 1.5), "both go out; the server picks"


def test_max_dice_rolls_a_seed_unless_locked(sim: MaxSim) -> None:
    seeds = []
    for _ in range(2):
        sim.click(sim.button("Generate"))
        seeds.append(COMMANDS["/gen"].parse(sim.sent[-1][1])["seed"])
    assert seeds[0] != seeds[1], "unlocked: a new seed per generation"
    sim.receive(sim.param("Seed lock"), 0, [1])
    sim.click(sim.button("Generate"))
    sim.click(sim.button("Generate"))
    locked = [COMMANDS["/gen"].parse(args)["seed"] for _, args in sim.sent[-2:]]
    assert locked[0] == locked[1]


def test_max_transfer_sends_the_dropped_clip(sim: MaxSim) -> None:
    sim.type_text(sim.find("textedit"), "dub reggae")
    sim.drop(sim.find("live.drop"), "Macintosh HD:/Users/me/Music/loop.wav")
    sim.receive(sim.param("Strength"), 0, [0.3])
    sim.click(sim.button("Transfer"))
    address, args = sim.sent[-1]
    values = COMMANDS[address].parse(args)
    assert address == "/transfer"
    assert values["input_path"] == "/Users/me/Music/loop.wav"
    assert values["prompt"] == "dub reggae" and values["strength"] == 0.3


def test_max_continue_and_inpaint_the_last_delivered_clip(sim: MaxSim) -> None:
    """Continue sends /continue <last clip> <extend> <prompt> <options> unit bars; Inpaint sends
    /inpaint <last clip> <from> <to> ...; both parse with the contract and follow the boxes."""
    sim.type_text(sim.find("textedit"), "a drum fill")
    sim.click(sim.button("Continue"))
    values = COMMANDS["/continue"].parse(sim.sent[-1][1])
    assert sim.sent[-1][0] == "/continue" and values["input_path"] == "no-clip-yet", (
        "before any clip the server answers /fail (no such file), nothing is silent")
    sim.incoming("/done", "/gen", 3, "/Music/dreamsampler/a.wav")
    sim.receive(sim.param("Extend"), 0, [2.0])
    sim.receive(sim.param("Seed lock"), 0, [1])
    sim.receive(sim.param("Steps"), 0, [8])
    sim.click(sim.button("Continue"))
    address, args = sim.sent[-1]
    values = COMMANDS[address].parse(args)
    assert address == "/continue" and values["input_path"] == "/Music/dreamsampler/a.wav"
    assert (values["continuation"], values["unit"], values["prompt"]) == (2.0, "bars",
                                                                           "a drum fill")
    assert values["num_inference_steps"] == 8 and "duration" not in values
    sim.incoming("/done", "/continue", 4, "/Music/dreamsampler/b.wav")
    sim.receive(sim.param("From"), 0, [1.0])
    sim.receive(sim.param("To"), 0, [1.5])
    sim.click(sim.button("Inpaint"))
    address, args = sim.sent[-1]
    values = COMMANDS[address].parse(args)
    assert address == "/inpaint" and values["input_path"] == "/Music/dreamsampler/b.wav"
    assert (values["mask_start"], values["mask_end"], values["unit"]) == (1.0, 1.5, "bars")
    assert values["prompt"] == "a drum fill"


def test_max_asks_for_the_lists_at_load_and_on_refresh(sim: MaxSim) -> None:
    assert [a for a, _ in sim.sent[1:3]] == ["/concept/available", "/preset/list"]
    sim.sent.clear()
    sim.click(sim.button("refresh"))
    assert sorted(sim.sent) == [("/concept/available", []), ("/preset/list", [])]


def test_max_concept_menu_follows_the_loaded_concepts(sim: MaxSim) -> None:
    """/concept.available (name, method, family, loaded per concept on disk) fills the menu
    after its "(none)" with the names; choosing one loads it (/concept/load, idempotent) and it
    goes out as the concept option of Generate and Transfer; a new list clears the choice; an
    empty list leaves only "(none)" and no concept option is sent; choosing "(none)" sends
    none."""
    menu = sim.param("Concept")
    assert menu.maxclass == "live.menu" and menu.state["items"] == ["(none)"]
    sim.click(sim.button("Generate"))
    assert "concept" not in COMMANDS["/gen"].parse(sim.sent[-1][1]), "nothing chosen yet"
    sim.incoming("/concept.available", "my-drums", "lora", "stable-audio-3", 1,
                 "my-bass", "ti", "musicldm", 0)
    assert menu.state["items"] == ["(none)", "my-drums", "my-bass"]
    sim.sent.clear()
    sim.receive(menu, 0, [1])
    assert sim.sent == [("/concept/load", ["my-drums"])], "choosing loads it"
    sim.click(sim.button("Generate"))
    assert COMMANDS["/gen"].parse(sim.sent[-1][1])["concept"] == "my-drums"
    sim.receive(menu, 0, [0])
    sim.click(sim.button("Generate"))
    assert "concept" not in COMMANDS["/gen"].parse(sim.sent[-1][1]), "(none) sends none"
    sim.receive(menu, 0, [2])
    sim.click(sim.button("Generate"))
    assert COMMANDS["/gen"].parse(sim.sent[-1][1])["concept"] == "my-bass"
    sim.drop(sim.find("live.drop"), "/Users/me/loop.wav")
    sim.click(sim.button("Transfer"))
    assert COMMANDS["/transfer"].parse(sim.sent[-1][1])["concept"] == "my-bass"
    sim.incoming("/concept.available", "my-drums", "lora", "sa3", 1)  # my-bass was deleted
    assert menu.state["items"] == ["(none)", "my-drums"] and menu.state["value"] == 0
    sim.click(sim.button("Generate"))
    assert "concept" not in COMMANDS["/gen"].parse(sim.sent[-1][1]), "a new list clears it"
    sim.receive(menu, 0, [1])
    sim.incoming("/concept.available")  # none on disk
    assert menu.state["items"] == ["(none)"]
    for button, address in (("Generate", "/gen"), ("Transfer", "/transfer")):
        sim.click(sim.button(button))
        assert sim.sent[-1][0] == address
        assert "concept" not in COMMANDS[address].parse(sim.sent[-1][1])


def test_max_preset_menu_and_trigger(sim: MaxSim) -> None:
    menu = sim.param("Preset")
    sim.sent.clear()
    sim.click(sim.button("Trigger"))
    assert sim.sent == [], "no preset chosen: nothing to trigger"
    sim.incoming("/preset.list", "beat", "drone")
    assert menu.state["items"] == ["(none)", "beat", "drone"]
    sim.receive(menu, 0, [2])
    sim.click(sim.button("Trigger"))
    assert sim.sent == [("/preset/trigger", ["drone"])]
    assert COMMANDS["/preset/trigger"].parse(["drone"]) == {"name": "drone"}
    sim.receive(menu, 0, [0])
    sim.click(sim.button("Trigger"))
    assert len(sim.sent) == 1, "(none) chosen: nothing to trigger"
    sim.receive(menu, 0, [2])
    sim.incoming("/preset.list")
    assert menu.state["items"] == ["(none)"]
    sim.click(sim.button("Trigger"))
    assert len(sim.sent) == 1, "the list was emptied: the old choice is gone"
    # the preset's clip is delivered like a generated one
    sim.incoming("/done", "/preset/trigger", 5, "/music/beat.wav")
    assert ["replace", "/music/beat.wav"] in [m for t, m in sim.effects if t.startswith("buffer~")]


def test_max_play_stop_and_jam_on_the_server(sim: MaxSim) -> None:
    status = next(b for b in sim.boxes.values()
                  if b.maxclass == "message" and b.text == "ready")
    sim.sent.clear()
    sim.click(sim.button("Play srv"))
    assert sim.sent == [], "no clip delivered yet"
    sim.incoming("/queued", 12, 0)
    sim.incoming("/done", "/gen", 12, "/music/clip.wav")
    sim.click(sim.button("Play srv"))
    address, args = sim.sent[-1]
    assert address == "/play" and COMMANDS[address].parse(args) == {"job_id": 12,
                                                                    "quantum": 4.0}
    sim.incoming("/done", "/play", 12, 1.5)
    assert status.state["content"] == ["done", "/play", 12, 1.5]
    jam = sim.param("Jam")
    sim.receive(jam, 0, [1])
    assert sim.sent[-1] == ("/jam", ["on"])
    COMMANDS["/jam"].parse(sim.sent[-1][1])
    sim.sent.clear()
    sim.click(sim.button("Stop srv"))
    assert sim.sent == [("/stop", [])], "/stop ends jam on the server: no /jam off needed"
    assert jam.state["value"] == 0
    sim.receive(jam, 0, [1])
    sim.receive(jam, 0, [0])
    assert sim.sent[-2:] == [("/jam", ["on"]), ("/jam", ["off"])]


def test_max_replies_drive_status_progress_cancel_and_clip(sim: MaxSim) -> None:
    status = next(b for b in sim.boxes.values()
                  if b.maxclass == "message" and b.text == "ready")
    sim.incoming("/queued", 12, 0)
    assert status.state["content"] == ["queued", "job", 12, 0]
    sim.click(sim.button("Cancel"))
    assert sim.sent[-1] == ("/cancel", [12])
    COMMANDS["/cancel"].parse(sim.sent[-1][1])
    sim.incoming("/progress", 12, 0.5)
    assert sim.find("slider").state["value"] == 0.5
    sim.incoming("/fail", "/gen", "duration 99 s exceeds the limit", 12)
    assert status.state["content"][:2] == ["failed:", "/gen"]
    sim.incoming("/done", "/gen", 12, "/music/dreamsampler/clip.wav")
    assert status.state["content"] == ["done", "/music/dreamsampler/clip.wav"]
    buffers = [m for text, m in sim.effects if text.startswith("buffer~")]
    assert buffers == [["replace", "/music/dreamsampler/clip.wav"]]
    if any(b.word == "js" for b in sim.boxes.values()):
        assert ("/tempo", [120.0]) in sim.sent, "the set's tempo is sent once the device loads"
        # the clip goes to the Live API script (tests/clients/test_live_clip.py runs it);
        # what it answers goes to the status line
        calls = [m for text, m in sim.effects if text == f"js {maxpat.CLIP_SCRIPT}"]
        assert calls == [["place", "/music/dreamsampler/clip.wav"]]
        script = sim.find("newobj", "js ")
        sim.output(script, 0, ["set", "placed", "clip.wav", "in", "'Audio'", "scene", 2])
        assert status.state["content"] == ["placed", "clip.wav", "in", "'Audio'", "scene", 2]
        paths = [m for text, m in sim.effects if text == "live.path"]
        assert paths == [["path", "live_set"]]  # the tempo follower, at load
        assert sim.find("newobj", "deferlow").state["deferred"] == 4
    # a job with stems (issue 19): the stems folder follows the clip's path on the status line
    sim.incoming("/done", "/gen", 13, "/music/dreamsampler/clip-2.wav", "/music/clip-2.stems")
    assert status.state["content"] == ["done", "/music/dreamsampler/clip-2.wav",
                                       "/music/clip-2.stems"]
    sim.incoming("/job.ended", 12, "done", "x")  # not routed: ignored without error


# -- Pd: structure ---------------------------------------------------------------------------------


def _pd() -> tuple[list[pd.PdBox], list[tuple[int, int, int, int]]]:
    return pd.parse((ROOT / FILES[2]).read_text(encoding="utf-8"))


def _pd_counts(box: pd.PdBox) -> tuple[int, int]:
    if box.kind == "obj":
        return pd_object_counts(box.text)
    if box.kind == "msg":
        return 1, 1
    if box.kind in ("floatatom", "symbolatom", "listbox"):
        fields = box.words  # x y width lo hi labelpos label receive send fontsize
        return pd_atom_counts(fields[7], fields[8])
    return 0, 0


def test_pd_connections_are_valid() -> None:
    boxes, connections = _pd()
    assert connections
    for a, outlet, b, inlet in connections:
        assert 0 <= a < len(boxes) and 0 <= b < len(boxes)
        assert outlet < _pd_counts(boxes[a])[1], (boxes[a], outlet)
        assert inlet < _pd_counts(boxes[b])[0], (boxes[b], inlet)


def test_pd_messages_match_the_contract() -> None:
    """Each [oscformat addr] is a command; the option template upstream names only options of
    that command, and int options pass through [i] (Pd numbers are floats)."""
    boxes, connections = _pd()
    into: dict[int, list[tuple[int, int, int]]] = {}
    for a, outlet, b, inlet in connections:
        into.setdefault(b, []).append((a, outlet, inlet))

    def upstream(index: int, depth: int = 4) -> list[pd.PdBox]:
        found = []
        for a, _, _ in into.get(index, []):
            found.append(boxes[a])
            if depth:
                found += upstream(a, depth - 1)
        return found

    formats = [b for b in boxes if b.kind == "obj" and b.words[0] == "oscformat"]
    addresses = {"/" + "/".join(b.words[1:]) for b in formats}
    assert {"/notify", "/gen", "/transfer", "/cancel"} <= addresses <= set(COMMANDS)
    for box in formats:
        command = COMMANDS["/" + "/".join(box.words[1:])]
        templates = [b for b in upstream(box.index) if b.kind == "msg" and "$2" in b.text]
        if command.options:
            assert len(templates) == 1, box
            words = templates[0].words
            pack = next(b for b in upstream(templates[0].index, 0) if b.words[0] == "pack")
            for key, slot in zip(words[::2], words[1::2], strict=True):
                option = command.option(key)
                assert option is not None, f"{command.address} has no option {key}"
                if not slot.startswith("$"):  # a constant option ("unit bars")
                    option.coerce(slot, command.address)
                    continue
                feeders = [boxes[a] for a, _, inlet in into[pack.index]
                           if inlet == int(slot[1:]) - 1]
                assert len(feeders) == 1
                is_int_box = feeders[0].kind == "obj" and feeders[0].words == ["i"]
                assert is_int_box == (option.type == "i"), (key, feeders[0])
    routes = [b for b in boxes if b.kind == "obj" and b.words[0] == "route"
              and "done" in b.words]
    assert len(routes) == 1
    assert {"/" + w for w in routes[0].words[1:]} <= set(REPLIES)


def test_pd_registers_and_has_the_core_controls() -> None:
    boxes, _ = _pd()
    texts = [b.text for b in boxes]
    assert "1 $1" in texts and "oscformat notify" in texts and "netsend -u -b" in texts
    assert "netreceive -u -b" in texts and "oscparse" in texts
    names = {w for b in boxes for w in b.words if w.startswith("ds-")}
    for name in ("ds-prompt", "ds-seed", "ds-steps", "ds-guidance", "ds-duration", "ds-bars",
                 "ds-strength", "ds-input", "ds-generate", "ds-transfer", "ds-cancel",
                 "ds-progress", "ds-status", "ds-reply", "ds-lock", "ds-concept", "ds-preset",
                 "ds-trigger", "ds-play", "ds-stop", "ds-jam"):
        assert name in names, name


def test_regenerate_cli_writes_and_checks(tmp_path: Path) -> None:
    from dreamsampler.cli import main

    assert main(["patches", "--root", str(tmp_path), "--check"]) == 1
    assert main(["patches", "--root", str(tmp_path)]) == 0
    assert main(["patches", "--root", str(tmp_path), "--check"]) == 0
    assert {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.*")} == set(FILES)


# -- Max and Live: the device strip and Live parameters -----------------------------------------

#: presentation boxes that only show something (everything else is a control the user operates)
DISPLAYS = {"comment", "message", "waveform~"}


def _presented(patcher: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in _boxes(patcher).values() if b.get("presentation") == 1]


@pytest.mark.parametrize("name", ["maxpat", "amxd"])
def test_presentation_fits_the_live_device_strip(name: str) -> None:
    """Live shows a device 169 px high: every presented box lies inside it (and inside the
    device width), and no two presented boxes overlap."""
    patcher = dict(_patchers())[name]
    presented = _presented(patcher)
    assert len(presented) > 30
    width = patcher["patcher"].get("devicewidth", maxpat.DEVICE_WIDTH)
    assert width == maxpat.DEVICE_WIDTH
    rects = []
    for box in presented:
        x, y, w, h = box["presentation_rect"]
        assert x >= 0 and y >= 0 and w > 0 and h > 0, box
        assert y + h <= maxpat.DEVICE_HEIGHT == 169, (box["maxclass"], box.get("text"), y + h)
        assert x + w <= width, (box["maxclass"], box.get("text"), x + w)
        rects.append((x, y, x + w, y + h, box.get("text") or box["maxclass"]))
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    if name == "amxd":
        assert patcher["patcher"]["openinpresentation"] == 1


@pytest.mark.parametrize("name", ["maxpat", "amxd"])
def test_every_control_is_a_live_parameter(name: str) -> None:
    """Every presented control is a live.* object with parameter_enable 1 and a unique long
    name; the number ranges and types equal the contract's (and the server's limits); the
    patcher's parameter table lists exactly them; the prompt is a stored pattr parameter."""
    patcher = dict(_patchers())[name]
    controls = [b for b in _presented(patcher)
                if b["maxclass"] not in DISPLAYS and not b.get("ignoreclick")]
    kinds = {b["maxclass"] for b in controls}
    assert kinds - {"textedit", "ezdac~"} <= {"live.text", "live.numbox", "live.menu",
                                                "live.drop", "live.dial"}, kinds
    params = [b for b in _boxes(patcher).values() if b.get("parameter_enable") == 1
              or b.get("saved_object_attributes", {}).get("parameter_enable") == 1]
    for box in controls:
        if box["maxclass"] in ("textedit", "ezdac~"):
            continue
        assert box["parameter_enable"] == 1, box
    valueof = {b["id"]: b["saved_attribute_attributes"]["valueof"] for b in params}
    longnames = [v["parameter_longname"] for v in valueof.values()]
    assert len(longnames) == len(set(longnames)), "long names are unique"
    assert all(v["parameter_shortname"] for v in valueof.values())
    table = {k: v for k, v in patcher["patcher"]["parameters"].items()
             if k.startswith("obj-")}
    assert table == {i: [v["parameter_longname"], v["parameter_shortname"], 0]
                     for i, v in valueof.items()}
    by_name = {v["parameter_longname"]: v for v in valueof.values()}
    spec = resolve()
    for number in spec.numbers:
        v = by_name[number.key.capitalize()]
        contract = [COMMANDS[c].option(number.key) for c in number.commands]
        assert v["parameter_type"] == (1 if number.is_int else 0)
        assert (v["parameter_mmin"], v["parameter_mmax"]) == (number.minimum, number.maximum)
        for arg in contract:
            assert arg is not None
            if arg.minimum is not None:
                assert v["parameter_mmin"] == arg.minimum
            if arg.maximum is not None:  # the server's limit may be tighter
                assert v["parameter_mmax"] <= arg.maximum
        assert v["parameter_initial"] == [number.default] and v["parameter_initial_enable"] == 1
    from dreamsampler.config import Limits
    assert by_name["Steps"]["parameter_mmax"] == Limits().max_steps
    assert by_name["Duration"]["parameter_mmax"] == Limits().max_duration
    prompt = next(b for b in params if b.get("text", "").startswith("pattr"))
    assert prompt["saved_attribute_attributes"]["valueof"]["parameter_type"] == 3  # blob
    assert prompt["restore"] == maxpat.DEFAULT_PROMPT.split()
    buttons = [b for b in controls if b["maxclass"] == "live.text"]
    generate = next(b for b in buttons if b["text"] == "Generate")
    assert generate["mode"] == 0, "button mode: mappable to a key or pad, a bang per press"
    assert "Generate" in patcher["patcher"]["parameters"]["parameterbanks"]["0"]["parameters"]


def test_prompt_is_stored_and_restored_with_the_set(sim: MaxSim) -> None:
    """The prompt goes into the pattr parameter on Enter (and on Generate); a device loaded with
    that stored value shows it in the prompt box and generates with it."""
    text = sim.find("textedit")
    assert text.state["text"] == ["ambient", "pad"], "the default prompt, from the pattr"
    sim.type_text(text, "dusty vinyl loop")
    sim.output(text, 0, ["text", "dusty", "vinyl", "loop"])  # Enter
    stored = sim.find("newobj", "pattr")
    assert stored.state["value"] == ["dusty", "vinyl", "loop"]
    saved = json.loads(json.dumps({"patcher": {**sim_patcher(sim)}}))
    for box in saved["patcher"]["boxes"]:
        if box["box"].get("text", "").startswith("pattr"):
            box["box"]["restore"] = stored.state["value"]  # what Live saves with the Set
    reopened = MaxSim(saved)
    reopened.loadbang()
    assert reopened.find("textedit").state["text"] == ["dusty", "vinyl", "loop"]
    reopened.click(reopened.button("Generate"))
    assert COMMANDS["/gen"].parse(reopened.sent[-1][1])["prompt"] == "dusty vinyl loop"


def sim_patcher(sim: MaxSim) -> dict[str, Any]:
    """The patcher body a simulator was built from."""
    return {"boxes": [{"box": b.attrs} for b in sim.boxes.values()],
            "lines": [{"patchline": {"source": list(src), "destination": list(dst)}}
                      for src, dsts in sim.wires.items() for dst in dsts]}


def test_max_patch_has_a_dsp_switch() -> None:
    """Play is silent while DSP is off: the Max patch shows an ezdac~ (click: DSP on/off) and
    play~ feeds it."""
    sim = MaxSim(_maxpat())
    dac = sim.find("ezdac~")
    assert dac.attrs["presentation"] == 1
    player = sim.find("newobj", "play~")
    assert sorted(sim.wires[(player.id, 0)]) == [(dac.id, 0), (dac.id, 1)]
    sim.loadbang()
    sim.incoming("/done", "/gen", 3, "/music/clip.wav")
    sim.click(sim.button("Play"))
    assert ("play~ ds-clip", [1]) in sim.effects
