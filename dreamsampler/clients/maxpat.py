"""The Max patch (``.maxpat``) and the Max for Live device (``.amxd``), generated from the spec.

Both share one builder and one presentation layout that fits Live's device strip (169 px high,
:data:`DEVICE_WIDTH` wide): a prompt ``textedit`` stored with the Set by a ``pattr`` parameter,
``live.numbox`` parameters for the generation options (types, ranges and initial values from the
contract), a seed dice with a lock, Generate / Transfer (a ``live.drop`` takes the input clip) /
Continue / Inpaint (the last delivered clip; extend, from, to in bars) / Cancel as ``live.text``
buttons, a progress ``slider`` fed by ``/progress``, a status line for
``/queued``, ``/done`` and ``/fail``, and on ``/done`` the clip loaded into a ``[buffer~]`` shown by
a ``waveform~`` with a play button. ``live.menu`` menus of the concepts on disk (choosing one loads
it) and the presets (after a ``(none)`` item) are filled from ``/concept.available`` (its names:
every fourth atom) and ``/preset.list`` (asked at load and
by *refresh*); Play / Stop (server) and a jam toggle drive the server's audio device. Every control
is a Live parameter (:func:`live_parameter`). ``[udpsend]`` sends from another port than
``[udpreceive]`` listens on, so the patch sends ``/notify 1 <reply-port>`` at load.

The Max patch plays through an ``ezdac~`` (click it: DSP on/off). The device differs in that
``[udpreceive]`` output goes through ``[deferlow]`` (the audio thread never waits on the UI), the
clip is placed in Live's Session View by ``dreamsampler-clip.js`` (the device's own track, the
selected scene's slot or the next empty one below, ``ClipSlot.create_audio_clip``, Live 12.0.5+;
the outcome goes to the status line), audio plays through ``plugout~`` and, when the contract has
a tempo command, the set's tempo is observed and sent.

An ``.amxd`` is the patcher JSON behind a small binary header of little-endian chunks: ``ampf``
(device type, ``aaaa`` = audio effect), ``meta`` and ``ptch`` (the JSON, NUL-terminated).
"""

from __future__ import annotations

import itertools
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamsampler.clients.objects import max_counts
from dreamsampler.clients.spec import NumberControl, ResolvedSpec

SERVER_HOST = "127.0.0.1"
SERVER_PORT = 9000
REPLY_PORT = 9001
DEFAULT_PROMPT = "ambient pad"
NO_INPUT = "no-input-dropped"
NO_CLIP = "no-clip-yet"
AMXD_AUDIO_EFFECT = b"aaaa"


# Live parameter types (``parameter_type``) and visibilities (``parameter_invisible``)
PARAM_FLOAT, PARAM_INT, PARAM_ENUM, PARAM_BLOB, PARAM_FILE = 0, 1, 2, 3, 4
AUTOMATED, STORED_ONLY, HIDDEN = 0, 1, 2

#: Live shows a device strip this many pixels high; every presentation rect fits in it
DEVICE_HEIGHT = 169
#: the device's (and the patch's presentation) width in pixels
DEVICE_WIDTH = 888
#: the Live API script shipped next to the device (see dreamsampler-clip.js)
CLIP_SCRIPT = "dreamsampler-clip.js"
#: the empty choice of the concept and preset menus (sends no option / triggers nothing)
NO_CHOICE = "(none)"
#: parameters on the device's first bank (Push, and the controls Live shows when collapsed)
BANK = ("Generate", "Dice", "Seed", "Steps", "Guidance", "Duration", "Bars", "Strength")


def live_parameter(longname: str, shortname: str, kind: int, *, minimum: float | None = None,
                   maximum: float | None = None, initial: float | None = None,
                   enum: list[str] | None = None, visibility: int = AUTOMATED,
                   unitstyle: int | None = None) -> dict[str, Any]:
    """Attributes that make a ``live.*`` box a Live parameter stored with the Set.

    The names are Max's own (``parameter_enable`` on the box, the rest under
    ``saved_attribute_attributes.valueof``), as Max writes them in ``.maxpat``/``.amxd`` files.
    """
    valueof: dict[str, Any] = {"parameter_longname": longname, "parameter_shortname": shortname,
                               "parameter_type": kind}
    if enum is not None:
        valueof["parameter_enum"] = enum
        valueof["parameter_mmax"] = max(len(enum) - 1, 0)
    if minimum is not None:
        valueof["parameter_mmin"] = minimum
    if maximum is not None:
        valueof["parameter_mmax"] = maximum
    if initial is not None:
        valueof["parameter_initial"] = [initial]
        valueof["parameter_initial_enable"] = 1
    if visibility != AUTOMATED:
        valueof["parameter_invisible"] = visibility
    if unitstyle is not None:
        valueof["parameter_unitstyle"] = unitstyle
    return {"parameter_enable": 1, "saved_attribute_attributes": {"valueof": valueof},
            "varname": longname.replace(" ", "_")}  # scripting names: one word


@dataclass
class MaxPatch:
    """A Max patcher being built: boxes with checked connections."""

    boxes: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: box id → (long name, short name) of every Live parameter
    parameters: dict[str, tuple[str, str]] = field(default_factory=dict)

    def box(self, maxclass: str, x: float, y: float, w: float = 0, h: float = 22,
            text: str | None = None, present: tuple[float, float, float, float] | None = None,
            **attrs: Any) -> str:
        """Add a box; ``present`` places it in presentation mode too."""
        box_id = f"obj-{len(self.boxes) + 1}"
        inlets, outlets = max_counts(maxclass, text or "")
        width = w or max(40, 7 * len(text or maxclass) + 16)
        box: dict[str, Any] = {
            "id": box_id,
            "maxclass": maxclass,
            "numinlets": inlets,
            "numoutlets": outlets,
            "outlettype": _outlet_types(maxclass, text or "", outlets),
            "patching_rect": [x, y, width, h],
        }
        if text is not None:
            box["text"] = text
        if present is not None:
            box["presentation"] = 1
            box["presentation_rect"] = list(present)
        box.update(attrs)
        valueof = attrs.get("saved_attribute_attributes", {}).get("valueof")
        if valueof is not None:
            self.parameters[box_id] = (valueof["parameter_longname"],
                                       valueof["parameter_shortname"])
        self.boxes.append({"box": box})
        self.counts[box_id] = (inlets, outlets)
        return box_id

    def obj(self, x: float, y: float, text: str, **attrs: Any) -> str:
        return self.box("newobj", x, y, text=text, **attrs)

    def msg(self, x: float, y: float, text: str, **attrs: Any) -> str:
        return self.box("message", x, y, text=text, **attrs)

    def button(self, x: float, y: float, label: str, longname: str, shortname: str,
               present: tuple[float, float, float, float], toggle: bool = False,
               initial: float | None = None, visibility: int = AUTOMATED) -> str:
        """A ``live.text`` (button mode: a bang per click, mappable to a key or pad; toggle
        mode: 1/0) that is a Live parameter."""
        return self.box("live.text", x, y, max(60, 7 * len(label) + 16), 20, text=label,
                        present=present, mode=int(toggle), texton=label,
                        **live_parameter(longname, shortname, PARAM_ENUM, enum=["off", "on"],
                                         initial=initial, visibility=visibility))

    def connect(self, source: str, outlet: int, sink: str, inlet: int) -> None:
        """Connect, checking indices against the object tables.

        Raises:
            ValueError: an outlet or inlet the box does not have.
        """
        if outlet >= self.counts[source][1]:
            raise ValueError(f"{source} has no outlet {outlet}")
        if inlet >= self.counts[sink][0]:
            raise ValueError(f"{sink} has no inlet {inlet}")
        self.lines.append({"patchline": {"source": [source, outlet],
                                         "destination": [sink, inlet]}})

    def chain(self, *boxes: str) -> None:
        for a, b in itertools.pairwise(boxes):
            self.connect(a, 0, b, 0)

    def patcher(self, **attrs: Any) -> dict[str, Any]:
        longnames = {long for long, _ in self.parameters.values()}
        bank = [name for name in BANK if name in longnames][:8]
        parameters: dict[str, Any] = {box_id: [long, short, 0]
                                      for box_id, (long, short) in self.parameters.items()}
        parameters["parameterbanks"] = {"0": {"index": 0, "name": "dreamsampler",
                                              "parameters": bank + ["-"] * (8 - len(bank))}}
        parameters["inherited_shortname"] = 1
        body: dict[str, Any] = {
            "fileversion": 1,
            "appversion": {"major": 8, "minor": 6, "revision": 0, "architecture": "x64",
                           "modernui": 1},
            "classnamespace": "box",
            "rect": [60.0, 80.0, 1100.0, 760.0],
            "openinpresentation": 1,
            "default_fontsize": 12.0,
            "gridsize": [15.0, 15.0],
            "boxes": self.boxes,
            "lines": self.lines,
            "parameters": parameters,
            "dependency_cache": [],
            "autosave": 0,
        }
        body.update(attrs)
        return {"patcher": body}


def _outlet_types(maxclass: str, text: str, outlets: int) -> list[str]:
    word = text.split()[0] if text else maxclass
    if word == "play~":
        return ["signal", "bang"]
    if word in ("plugin~", "plugout~"):
        return ["signal"] * outlets
    if maxclass in ("live.numbox", "live.dial"):
        return ["", "float"]
    if maxclass == "live.menu":
        return ["", "", "float"]
    return [""] * outlets


def _pak_text(numbers: tuple[NumberControl, ...]) -> str:
    """``pak seed 0 steps 25 guidance 2.5 duration 10.``: symbol slots hold the keys."""
    return "pak " + " ".join(f"{n.key} {n.literal()}" for n in numbers)


def _number_parameter(number: NumberControl) -> dict[str, Any]:
    """A number's Live parameter: range and initial value from the contract and defaults."""
    name = number.key.capitalize()
    kind = PARAM_INT if number.is_int else PARAM_FLOAT
    cast = int if number.is_int else float
    return live_parameter(name, name, kind, minimum=cast(number.minimum),
                          maximum=cast(number.maximum), initial=cast(number.default),
                          unitstyle=0 if number.is_int else 1)


# -- presentation layout (pixels; Live's device strip is DEVICE_HEIGHT high) ----------------------
# left: prompt, the commands, status, progress, the input drop; middle: the numbers in a grid of
# NUMBER_COLUMNS, dice and lock, refresh and reconnect; right: menus, waveform, playback.
LEFT, MIDDLE, RIGHT = 4.0, 372.0, 614.0
NUMBER_COLUMNS, CELL_W, ROW_H = 3, 78.0, 40.0
BOTTOM_ROW = 146.0
COMMAND_W, CANCEL_W = 66.0, 50.0


def build(spec: ResolvedSpec, device: bool = False) -> MaxPatch:
    """The patch for ``spec``; ``device`` builds the Max for Live variant."""
    p = MaxPatch()
    buffer_name = "---ds-clip" if device else "ds-clip"
    p.box("comment", 20, 10, 700, text="dreamsampler - generated by 'dreamsampler patches' from "
          "the OSC contract; do not edit, regenerate.")

    # -- network --------------------------------------------------------------------------------
    udpsend = p.obj(700, 700, f"udpsend {SERVER_HOST} {SERVER_PORT}")
    udpreceive = p.obj(700, 330, f"udpreceive {REPLY_PORT}")
    load = p.obj(700, 40, "loadbang")
    init = p.obj(700, 70, "t b b b")
    p.connect(load, 0, init, 0)
    notify = p.msg(700, 100, f"{spec.notify.address} 1 {REPLY_PORT}")
    reconnect = p.button(860, 40, "reconnect", "Reconnect", "Reconnect",
                         (MIDDLE + CELL_W, BOTTOM_ROW, CELL_W - 4, 18))
    p.connect(init, 0, notify, 0)
    p.connect(reconnect, 0, notify, 0)
    p.connect(notify, 0, udpsend, 0)

    # -- prompt: a textedit whose text is stored with the Set by a pattr parameter ------------
    p.box("comment", 20, 40, 200, text="prompt", present=(LEFT, 2, 200, 18))
    prompt = p.box("textedit", 20, 60, 400, 40, present=(LEFT, 20, 360, 38), lines=2,
                   keymode=1, wordwrap=1)
    prompt_text = p.obj(20, 110, "route text")
    p.connect(prompt, 0, prompt_text, 0)
    stored_prompt = p.obj(430, 110, "pattr Prompt @parameter_enable 1",
                          restore=DEFAULT_PROMPT.split(),
                          saved_object_attributes={"parameter_enable": 1,
                                                   "parameter_mappable": 0},
                          **{k: v for k, v in live_parameter(
                              "Prompt", "Prompt", PARAM_BLOB,
                              visibility=STORED_ONLY).items() if k != "parameter_enable"})
    restore_prompt = p.obj(430, 40, "prepend set")
    p.connect(prompt_text, 0, stored_prompt, 0)  # Enter or Generate stores the prompt
    p.connect(stored_prompt, 0, restore_prompt, 0)  # the Set's (or the default) prompt
    p.connect(restore_prompt, 0, prompt, 0)

    # -- numbers: live.numbox parameters, initial values from the config defaults -------------
    boxes: dict[str, str] = {}
    every_number = (*spec.numbers, *spec.region_numbers)
    for i, number in enumerate(every_number):
        x = 20 + 100 * i
        cx = MIDDLE + CELL_W * (i % NUMBER_COLUMNS)
        cy = 2 + ROW_H * (i // NUMBER_COLUMNS)
        p.box("comment", x, 150, 90, text=number.label, present=(cx, cy, CELL_W - 4, 18))
        boxes[number.key] = p.box("live.numbox", x, 170, 80, 18,
                                  present=(cx, cy + 18, CELL_W - 4, 18),
                                  **_number_parameter(number))
    rows = (len(every_number) + NUMBER_COLUMNS - 1) // NUMBER_COLUMNS

    dice_gate = None
    seed = next((n for n in spec.numbers if n.dice), None)
    if seed is not None:
        dy = 4 + ROW_H * rows
        dice = p.button(20, 230, "dice", "Dice", "Dice", (MIDDLE, dy, CELL_W - 4, 18))
        lock = p.button(100, 230, "lock", "Seed lock", "Lock",
                        (MIDDLE + CELL_W, dy, CELL_W - 4, 18), toggle=True, initial=0)
        unlocked = p.obj(100, 260, "== 0")
        dice_gate = p.obj(100, 290, "gate 1")
        roll = p.obj(20, 320, "random 1000000")
        p.chain(lock, unlocked, dice_gate)
        p.connect(dice_gate, 0, roll, 0)
        p.connect(dice, 0, roll, 0)
        p.connect(roll, 0, boxes[seed.key], 0)

    concept_right: list[str] = []
    # the command row: Generate, Transfer, Continue, Inpaint (when in the contract), Cancel
    command_x = itertools.count(LEFT, COMMAND_W + 2)

    def command(x: float, label: str, address: str, input_prepend: str | None = None,
                tail: str = "") -> str:
        """Button → [t b b b b] → dice, prompt, options (+ ``tail``) → [zl join] → (input) →
        [prepend addr]."""
        numbers = spec.numbers_for(address)
        button = p.button(x, 370, label, label, label,
                          (next(command_x), 62, COMMAND_W, 22))
        order = p.obj(x, 400, "t b b b b")
        p.connect(button, 0, order, 0)
        if dice_gate is not None:
            p.connect(order, 3, dice_gate, 1)
        p.connect(order, 2, prompt, 0)
        stored = p.obj(x, 430, "zl reg")
        p.connect(prompt_text, 0, stored, 1)
        options = p.obj(x + 80, 430, (_pak_text(numbers) + " " + tail).strip())
        for i, number in enumerate(numbers):
            p.connect(boxes[number.key], 0, options, 2 * i + 1)
        p.connect(order, 1, options, 0)
        p.connect(order, 0, stored, 0)
        joined = p.obj(x, 460, "zl join")
        p.connect(stored, 0, joined, 0)
        p.connect(options, 0, joined, 1)
        last = joined
        if spec.concepts is not None:
            with_concept = p.obj(x, 490, "zl join")
            p.connect(last, 0, with_concept, 0)
            concept_right.append(with_concept)
            last = with_concept
        if input_prepend is not None:
            p.connect(last, 0, input_prepend, 0)
            last = input_prepend
        out = p.obj(x, 550, f"prepend {address}")
        p.connect(last, 0, out, 0)
        p.connect(out, 0, udpsend, 0)
        return button

    command(20, "Generate", spec.generate.address)

    # transfer: the input clip is dropped on a live.drop (stored with the Set; Max paths → POSIX)
    drop = p.box("live.drop", 250, 230, 200, 30, present=(LEFT, 128, 360, 36),
                 legend="drop a clip here for Transfer", decodemode=1,
                 **live_parameter("Input clip", "Input", PARAM_FILE, visibility=STORED_ONLY))
    posix = p.obj(250, 270, "conformpath slash boot")
    p.chain(drop, posix)
    input_set = p.obj(250, 300, "prepend set")
    input_prepend = p.obj(250, 520, f"prepend {NO_INPUT}")
    p.chain(posix, input_set, input_prepend)
    command(250, "Transfer", spec.transfer.address, input_prepend)

    # continue / inpaint the last delivered clip: [pak <clip> <numbers>] sets the head of the
    # message ("<clip> <extend>", "<clip> <from> <to>"); the unit goes after the options
    region_heads: list[str] = []
    for x, message, keys in ((1500, spec.continue_, ("extend",)),
                             (1750, spec.inpaint, ("from", "to"))):
        if message is None:
            continue
        numbers = [boxes[k] for k in keys]
        defaults = " ".join(n.literal() for n in spec.region_numbers if n.key in keys)
        head = p.obj(x, 300, f"pak {NO_CLIP} {defaults}")
        for i, box in enumerate(numbers):
            p.connect(box, 0, head, i + 1)
        head_set = p.obj(x, 330, "prepend set")
        head_prepend = p.obj(x, 520, f"prepend {NO_CLIP} {defaults}")
        p.chain(head, head_set, head_prepend)
        region_heads.append(head)
        command(x, message.address.strip("/").capitalize(), message.address, head_prepend,
                tail=f"unit {spec.region_unit}")

    # cancel the last queued job
    cancel = p.button(480, 370, "Cancel", "Cancel", "Cancel",
                      (next(command_x), 62, CANCEL_W, 22))
    last_job = p.obj(480, 430, "zl reg")
    cancel_out = p.obj(480, 550, f"prepend {spec.cancel.address}")
    p.chain(cancel, last_job, cancel_out, udpsend)

    # menus filled from the server's lists (at load and by refresh); a new list clears the choice
    refresh = ""
    if spec.concepts is not None or spec.presets is not None:
        refresh = p.button(1000, 40, "refresh", "Refresh lists", "Refresh",
                           (MIDDLE, BOTTOM_ROW, CELL_W - 4, 18))
    concept_menu = preset_menu = preset_choice = None
    if spec.concepts is not None:
        p.box("comment", 20, 590, 80, text="concept", present=(RIGHT, 2, 52, 18))
        concept_menu = p.box("live.menu", 20, 610, 160, 18, present=(RIGHT + 52, 2, 150, 18),
                             **live_parameter("Concept", "Concept", PARAM_ENUM,
                                              enum=[NO_CHOICE], visibility=HIDDEN))
        ask = p.msg(260, 610, spec.concepts.list_command)
        p.connect(init, 0, ask, 0)
        p.connect(refresh, 0, ask, 0)
        p.connect(ask, 0, udpsend, 0)
        which = p.obj(20, 640, f"sel {NO_CHOICE}")
        p.connect(concept_menu, 1, which, 0)
        forget = p.msg(120, 670, "zlclear")
        p.connect(which, 0, forget, 0)
        chosen = p.obj(20, 670, f"prepend {spec.concepts.option}")
        p.connect(which, 1, chosen, 0)
        load_chosen = p.obj(180, 670, f"prepend {spec.concepts.load}")  # idempotent
        p.connect(which, 1, load_chosen, 0)
        p.connect(load_chosen, 0, udpsend, 0)
        for join in concept_right:
            p.connect(chosen, 0, join, 1)
            p.connect(forget, 0, join, 0)
    if spec.presets is not None:
        p.box("comment", 1000, 590, 80, text="preset", present=(RIGHT, 24, 52, 18))
        preset_menu = p.box("live.menu", 1000, 610, 160, 18, present=(RIGHT + 52, 24, 150, 18),
                            **live_parameter("Preset", "Preset", PARAM_ENUM, enum=[NO_CHOICE],
                                             visibility=HIDDEN))
        ask = p.msg(1170, 610, spec.presets.list_command)
        p.connect(init, 0, ask, 0)
        p.connect(refresh, 0, ask, 0)
        p.connect(ask, 0, udpsend, 0)
        preset_choice = p.obj(1000, 700, "zl reg")
        which = p.obj(1000, 640, f"sel {NO_CHOICE}")
        p.connect(preset_menu, 1, which, 0)
        forget = p.msg(1100, 670, "zlclear")
        p.connect(which, 0, forget, 0)
        p.connect(forget, 0, preset_choice, 0)
        p.connect(which, 1, preset_choice, 1)
        trigger = p.button(1170, 640, "Trigger", "Trigger preset", "Trigger",
                           (RIGHT + 206, 24, 64, 18))
        p.connect(trigger, 0, preset_choice, 0)
        trigger_out = p.obj(1000, 730, f"prepend {spec.presets.trigger}")
        p.chain(preset_choice, trigger_out, udpsend)

    # -- replies --------------------------------------------------------------------------------
    source = udpreceive
    if device:  # never let network input run on the audio (scheduler) thread
        source = p.obj(700, 360, "deferlow")
        p.connect(udpreceive, 0, source, 0)
    routed = spec.routed_replies
    route = p.obj(700, 390, "route " + " ".join(routed))
    p.connect(source, 0, route, 0)
    outlet = {address: i for i, address in enumerate(routed)}

    status = p.msg(20, 700, "ready", present=(LEFT, 88, 360, 22))
    queued = p.obj(700, 420, "unpack 0 0")
    p.connect(route, outlet["/queued"], queued, 0)
    p.connect(queued, 0, last_job, 1)
    queued_text = p.obj(700, 450, "prepend set queued job")
    p.connect(route, outlet["/queued"], queued_text, 0)
    p.connect(queued_text, 0, status, 0)

    progress = p.obj(800, 420, "unpack 0 0.")
    p.connect(route, outlet["/progress"], progress, 0)
    bar = p.box("slider", 20, 670, 300, 20, present=(LEFT, 114, 360, 10), orientation=1,
                size=1.0, floatoutput=1, ignoreclick=1)
    p.connect(progress, 1, bar, 0)

    failed = p.obj(900, 420, "prepend set failed:")
    p.connect(route, outlet["/fail"], failed, 0)
    p.connect(failed, 0, status, 0)

    done = p.obj(700, 480, "route " + " ".join(spec.delivering))
    p.connect(route, outlet["/done"], done, 0)
    clip = p.obj(700, 510, "unpack 0 s")
    for i in range(len(spec.delivering)):
        p.connect(done, i, clip, 0)
    for head in region_heads:  # Continue / Inpaint work on the last delivered clip
        p.connect(clip, 1, head, 0)
    other_done = p.obj(900, 510, "prepend set done")  # /done /play, /done /stop, ...
    p.connect(done, len(spec.delivering), other_done, 0)
    p.connect(other_done, 0, status, 0)
    fan = p.obj(700, 540, "t s s s")
    p.connect(clip, 1, fan, 0)
    # the status shows "done <path>", and the stems folder after it when the job made stems
    # (/done <address> <job id> <path> <stems folder>: issue 19)
    delivered = p.obj(900, 540, "zl slice 1")
    for i in range(len(spec.delivering)):
        p.connect(done, i, delivered, 0)
    done_text = p.obj(900, 570, "prepend set done")
    p.connect(delivered, 1, done_text, 0)
    p.connect(done_text, 0, status, 0)
    replace = p.obj(700, 570, "prepend replace")
    buffer = p.obj(700, 600, f"buffer~ {buffer_name}")
    p.chain(fan, replace, buffer)

    def fill(x: float, reply: str, menu: str, choices: list[str], stride: int = 1) -> None:
        """``reply name...`` → forget the stored choice, make the menu ``(none) name...`` and
        select ``(none)`` without output (a bare reply leaves only ``(none)``). With ``stride``
        atoms per entry, the names are the first of each: [zl iter stride] → [zl slice 1] →
        [zl group], flushed by a bang once the reply is through."""
        order = p.obj(x, 640, "t b l b")
        p.connect(route, outlet[reply], order, 0)
        forget = p.msg(x + 160, 670, "zlclear")
        p.connect(order, 2, forget, 0)
        for choice in choices:
            p.connect(forget, 0, choice, 0)
        names = p.obj(x, 670, "route bang")
        p.connect(order, 1, names, 0)
        only_none = p.msg(x + 80, 700, f"_parameter_range {NO_CHOICE}")
        p.connect(names, 0, only_none, 0)
        p.connect(only_none, 0, menu, 0)
        items = p.obj(x, 700, f"prepend _parameter_range {NO_CHOICE}")
        if stride > 1:
            flush = p.obj(x, 730, "t b l")
            p.connect(names, 1, flush, 0)
            entries = p.obj(x + 40, 760, f"zl iter {stride}")
            first = p.obj(x + 40, 790, "zl slice 1")
            collect = p.obj(x, 820, "zl group 4096")
            p.connect(flush, 1, entries, 0)
            p.chain(entries, first, collect)
            p.connect(flush, 0, collect, 0)
            p.connect(collect, 0, items, 0)
        else:
            p.connect(names, 1, items, 0)
        p.connect(items, 0, menu, 0)
        select_none = p.msg(x + 240, 700, "set 0")
        p.connect(order, 0, select_none, 0)
        p.connect(select_none, 0, menu, 0)

    if spec.concepts is not None and concept_menu is not None:
        fill(260, spec.concepts.reply, concept_menu, concept_right, spec.concepts.stride)
    if spec.presets is not None and preset_menu is not None and preset_choice is not None:
        fill(1250, spec.presets.reply, preset_menu, [preset_choice])

    # -- playback on the server's audio device -----------------------------------------------
    jam_toggle = None
    if spec.jam is not None:
        # not restored with the Set: loading a Set never starts (or stops) the server's jam
        jam_toggle = p.button(1300, 760, "jam", "Jam", "Jam", (RIGHT + 202, BOTTOM_ROW, 40, 18),
                              toggle=True, visibility=HIDDEN)
        jam_choice = p.obj(1300, 790, "sel 1 0")
        jam_on = p.msg(1300, 820, f"{spec.jam} on")
        jam_off = p.msg(1380, 820, f"{spec.jam} off")
        p.chain(jam_toggle, jam_choice, jam_on, udpsend)
        p.connect(jam_choice, 1, jam_off, 0)
        p.connect(jam_off, 0, udpsend, 0)
    if spec.play is not None:
        play_server = p.button(1000, 740, "Play srv", "Play on server", "Play srv",
                               (RIGHT + 54, BOTTOM_ROW, 72, 18))
        last_clip = p.obj(1000, 770, "zl reg")
        p.connect(clip, 0, last_clip, 1)
        quantum = f"{spec.quantum:g}" + ("" if "." in f"{spec.quantum:g}" else ".")
        play_out = p.msg(1000, 800, f"{spec.play} $1 {quantum}")
        p.chain(play_server, last_clip, play_out, udpsend)
    if spec.stop is not None:
        stop_server = p.button(1150, 740, "Stop srv", "Stop server", "Stop srv",
                               (RIGHT + 128, BOTTOM_ROW, 72, 18))
        stop_order = p.obj(1150, 770, "t b b")
        stop_out = p.msg(1150, 800, spec.stop)
        p.chain(stop_server, stop_order, stop_out, udpsend)
        if jam_toggle is not None:  # /stop also ends jam mode
            jam_reset = p.msg(1230, 800, "set 0")
            p.connect(stop_order, 1, jam_reset, 0)
            p.connect(jam_reset, 0, jam_toggle, 0)

    # -- the clip: waveform, play -------------------------------------------------------------
    p.box("waveform~", 20, 740, 400, 80, present=(RIGHT, 46, 270, 96), buffername=buffer_name)
    play = p.button(430, 740, "Play", "Play clip", "Play", (RIGHT, BOTTOM_ROW, 50, 18))
    start = p.msg(430, 770, "1")
    player = p.obj(430, 800, f"play~ {buffer_name}")
    p.chain(play, start, player)
    if device:
        through = p.obj(560, 770, "plugin~")
        out = p.obj(560, 830, "plugout~")
        p.connect(through, 0, out, 0)
        p.connect(through, 1, out, 1)
    else:  # the DSP switch: click it to turn audio on (Play is silent while DSP is off)
        out = p.box("ezdac~", 430, 830, 45, 45, present=(RIGHT + 246, BOTTOM_ROW - 2, 22, 22))
    p.connect(player, 0, out, 0)
    p.connect(player, 0, out, 1)

    if device:
        _live(p, spec, fan, status, udpsend)
    return p


def _live(p: MaxPatch, spec: ResolvedSpec, clip_fan: str, status: str, udpsend: str) -> None:
    """Live API: the clip goes onto the device's own track (``dreamsampler-clip.js``), the
    outcome to the status line; the set's tempo is followed."""
    ready = p.obj(950, 40, "live.thisdevice")
    place = p.obj(850, 600, "prepend place")
    script = p.obj(850, 630, f"js {CLIP_SCRIPT}",
                   saved_object_attributes={"filename": CLIP_SCRIPT, "parameter_enable": 0})
    p.connect(clip_fan, 0, place, 0)
    p.chain(place, script, status)
    if spec.tempo is not None:
        set_path = p.msg(950, 70, "path live_set")
        set_obj = p.obj(950, 100, "live.path")
        tempo = p.obj(950, 130, "live.observer tempo")
        send = p.obj(950, 160, f"prepend {spec.tempo}")
        p.chain(ready, set_path, set_obj)
        p.connect(set_obj, 0, tempo, 1)
        p.chain(tempo, send, udpsend)


def maxpat_text(spec: ResolvedSpec) -> str:
    """``dreamsampler.maxpat``: the patcher JSON."""
    return json.dumps(build(spec).patcher(), indent=1) + "\n"


def amxd_bytes(spec: ResolvedSpec) -> bytes:
    """``dreamsampler.amxd``: the device's patcher behind the ``ampf``/``meta``/``ptch`` header."""
    patcher = build(spec, device=True).patcher(
        devicewidth=float(DEVICE_WIDTH), description="dreamsampler: text-to-music over OSC",
        dependency_cache=[{"name": CLIP_SCRIPT, "patcherrelativepath": ".", "type": "TEXT",
                           "implicit": 1}],
    )
    payload = json.dumps(patcher, indent=1).encode("utf-8") + b"\n\x00"
    return (_chunk(b"ampf", AMXD_AUDIO_EFFECT) + _chunk(b"meta", b"\x00\x00\x00\x00")
            + _chunk(b"ptch", payload))


def clip_script() -> bytes:
    """The device's Live API script (``dreamsampler-clip.js``), shipped next to the ``.amxd``."""
    return (Path(__file__).with_name(CLIP_SCRIPT)).read_bytes()


def _chunk(name: bytes, data: bytes) -> bytes:
    return name + struct.pack("<I", len(data)) + data


def read_amxd(data: bytes) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Split an ``.amxd`` into its chunks and parse the patcher JSON.

    Raises:
        ValueError: truncated chunk, missing ``ampf``/``ptch``, or ``ptch`` that is not JSON.
    """
    chunks: dict[str, bytes] = {}
    at = 0
    while at < len(data):
        if at + 8 > len(data):
            raise ValueError(f"truncated chunk header at byte {at}")
        name = data[at:at + 4].decode("ascii")
        (size,) = struct.unpack("<I", data[at + 4:at + 8])
        body = data[at + 8:at + 8 + size]
        if len(body) != size:
            raise ValueError(f"chunk {name} claims {size} bytes, has {len(body)}")
        chunks[name] = body
        at += 8 + size
    if "ampf" not in chunks or "ptch" not in chunks:
        raise ValueError(f"not an amxd: chunks {sorted(chunks)}")
    return chunks, json.loads(chunks["ptch"].rstrip(b"\x00").decode("utf-8"))
