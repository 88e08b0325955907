"""The Max patch (``.maxpat``) and the Max for Live device (``.amxd``), generated from the spec.

Both share one builder: a prompt ``textedit``, number boxes for the generation options (types and
ranges from the contract), a seed dice with a lock, Generate / Transfer (a ``dropfile`` takes the
input clip) / Cancel, a progress ``slider`` fed by ``/progress``, a status line for ``/queued``,
``/done`` and ``/fail``, and on ``/done`` the clip loaded into a ``[buffer~]`` shown by a
``waveform~`` with a play button. Menus of the server's loaded concepts and presets are filled from
``/concept.list`` and ``/preset.list`` (asked at load and by *refresh*); Play / Stop (server) and a
jam toggle drive the server's audio device. ``[udpsend]`` sends from another port than
``[udpreceive]`` listens on, so the patch sends ``/notify 1 <reply-port>`` at load.

The device differs in that ``[udpreceive]`` output goes through ``[deferlow]`` (the audio thread
never waits on the UI), the clip goes to Live's highlighted clip slot through the Live API
(``create_audio_clip``, Live 12+), audio plays through ``plugout~`` and, when the contract has a
tempo command, the set's tempo is observed and sent.

An ``.amxd`` is the patcher JSON behind a small binary header of little-endian chunks: ``ampf``
(device type, ``aaaa`` = audio effect), ``meta`` and ``ptch`` (the JSON, NUL-terminated).
"""

from __future__ import annotations

import itertools
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from dreamsampler.clients.objects import max_counts
from dreamsampler.clients.spec import NumberControl, ResolvedSpec

SERVER_HOST = "127.0.0.1"
SERVER_PORT = 9000
REPLY_PORT = 9001
DEFAULT_PROMPT = "ambient pad"
NO_INPUT = "no-input-dropped"
AMXD_AUDIO_EFFECT = b"aaaa"


@dataclass
class MaxPatch:
    """A Max patcher being built: boxes with checked connections."""

    boxes: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)

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
        self.boxes.append({"box": box})
        self.counts[box_id] = (inlets, outlets)
        return box_id

    def obj(self, x: float, y: float, text: str) -> str:
        return self.box("newobj", x, y, text=text)

    def msg(self, x: float, y: float, text: str, **attrs: Any) -> str:
        return self.box("message", x, y, text=text, **attrs)

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
    return [""] * outlets


def _pak_text(numbers: tuple[NumberControl, ...]) -> str:
    """``pak seed 0 steps 25 guidance 2.5 duration 10.``: symbol slots hold the keys."""
    return "pak " + " ".join(f"{n.key} {n.literal()}" for n in numbers)


def build(spec: ResolvedSpec, device: bool = False) -> MaxPatch:
    """The patch for ``spec``; ``device`` builds the Max for Live variant."""
    p = MaxPatch()
    buffer_name = "---ds-clip" if device else "ds-clip"
    p.box("comment", 20, 10, 700, text="dreamsampler - generated by 'dreamsampler patches' from "
          "the OSC contract; do not edit, regenerate.", present=(10, 5, 500, 20))

    # -- network --------------------------------------------------------------------------------
    udpsend = p.obj(700, 700, f"udpsend {SERVER_HOST} {SERVER_PORT}")
    udpreceive = p.obj(700, 330, f"udpreceive {REPLY_PORT}")
    load = p.obj(700, 40, "loadbang")
    init = p.obj(700, 70, "t b b b")
    p.connect(load, 0, init, 0)
    notify = p.msg(700, 100, f"{spec.notify.address} 1 {REPLY_PORT}")
    reconnect = p.box("textbutton", 860, 40, 90, text="reconnect",
                      present=(430, 35, 80, 22))
    p.connect(init, 0, notify, 0)
    p.connect(reconnect, 0, notify, 0)
    p.connect(notify, 0, udpsend, 0)

    # -- prompt ---------------------------------------------------------------------------------
    p.box("comment", 20, 40, 200, text="prompt", present=(10, 30, 60, 20))
    prompt = p.box("textedit", 20, 60, 400, 40, present=(10, 50, 500, 40), lines=2,
                   keymode=1, wordwrap=1)
    prompt_default = p.msg(430, 40, f"set {DEFAULT_PROMPT}")
    p.connect(init, 2, prompt_default, 0)
    p.connect(prompt_default, 0, prompt, 0)
    prompt_text = p.obj(20, 110, "route text")
    p.connect(prompt, 0, prompt_text, 0)

    # -- numbers --------------------------------------------------------------------------------
    boxes: dict[str, str] = {}
    for i, number in enumerate(spec.numbers):
        x = 20 + 100 * i
        p.box("comment", x, 150, 90, text=number.label, present=(10 + 85 * i, 100, 80, 20))
        box = p.box("number" if number.is_int else "flonum", x, 170, 80,
                    present=(10 + 85 * i, 120, 75, 22), minimum=number.minimum,
                    maximum=number.maximum, parameter_enable=0,
                    **({} if number.is_int else {"format": 6}))
        default = p.msg(x, 130, number.literal())
        p.connect(init, 1, default, 0)
        p.connect(default, 0, box, 0)
        boxes[number.key] = box

    dice_gate = None
    seed = next((n for n in spec.numbers if n.dice), None)
    if seed is not None:
        p.box("comment", 20, 210, 60, text="dice", present=(10, 150, 40, 20))
        dice = p.box("button", 20, 230, 24, 24, present=(45, 148, 24, 24))
        p.box("comment", 60, 210, 60, text="lock", present=(80, 150, 40, 20))
        lock = p.box("toggle", 60, 230, 24, 24, present=(115, 148, 24, 24))
        lock_init = p.msg(100, 200, "0")
        unlocked = p.obj(60, 260, "== 0")
        dice_gate = p.obj(100, 290, "gate 1")
        roll = p.obj(20, 320, "random 1000000")
        p.connect(init, 1, lock_init, 0)
        p.connect(lock_init, 0, lock, 0)
        p.chain(lock, unlocked, dice_gate)
        p.connect(dice_gate, 0, roll, 0)
        p.connect(dice, 0, roll, 0)
        p.connect(roll, 0, boxes[seed.key], 0)

    concept_right: list[str] = []

    def command(x: float, label: str, address: str, present_x: float,
                input_prepend: str | None = None) -> str:
        """Button → [t b b b b] → dice, prompt, options → [zl join] → (input) → [prepend addr]."""
        numbers = spec.numbers_for(address)
        button = p.box("textbutton", x, 370, 90, text=label, present=(present_x, 185, 90, 26))
        order = p.obj(x, 400, "t b b b b")
        p.connect(button, 0, order, 0)
        if dice_gate is not None:
            p.connect(order, 3, dice_gate, 1)
        p.connect(order, 2, prompt, 0)
        stored = p.obj(x, 430, "zl reg")
        p.connect(prompt_text, 0, stored, 1)
        options = p.obj(x + 80, 430, _pak_text(numbers))
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

    command(20, "Generate", spec.generate.address, 10)

    # transfer: the input clip comes from a dropfile (Max paths → POSIX via conformpath)
    p.box("comment", 250, 210, 200, text="drop an input clip for Transfer",
          present=(160, 150, 200, 20))
    drop = p.box("dropfile", 250, 230, 200, 30, present=(300, 148, 210, 30))
    posix = p.obj(250, 270, "conformpath slash boot")
    p.chain(drop, posix)
    input_set = p.obj(250, 300, "prepend set")
    input_prepend = p.obj(250, 520, f"prepend {NO_INPUT}")
    p.chain(posix, input_set, input_prepend)
    input_label = p.msg(420, 300, NO_INPUT, present=(300, 215, 210, 22))
    p.connect(input_set, 0, input_label, 0)
    command(250, "Transfer", spec.transfer.address, 110, input_prepend)

    # cancel the last queued job
    cancel = p.box("textbutton", 480, 370, 90, text="Cancel", present=(210, 185, 90, 26))
    last_job = p.obj(480, 430, "zl reg")
    cancel_out = p.obj(480, 550, f"prepend {spec.cancel.address}")
    p.chain(cancel, last_job, cancel_out, udpsend)

    # menus filled from the server's lists (at load and by refresh); a new list clears the choice
    refresh = ""
    if spec.concepts is not None or spec.presets is not None:
        refresh = p.box("textbutton", 1000, 40, 60, text="refresh", present=(445, 275, 65, 22))
    concept_menu = preset_menu = preset_choice = None
    if spec.concepts is not None:
        p.box("comment", 20, 590, 80, text="concept", present=(10, 277, 55, 20))
        concept_menu = p.box("umenu", 20, 610, 160, present=(65, 275, 130, 22), items=[])
        ask = p.msg(260, 610, spec.concepts.list_command)
        p.connect(init, 0, ask, 0)
        p.connect(refresh, 0, ask, 0)
        p.connect(ask, 0, udpsend, 0)
        chosen = p.obj(20, 640, f"prepend {spec.concepts.option}")
        p.connect(concept_menu, 1, chosen, 0)
        for join in concept_right:
            p.connect(chosen, 0, join, 1)
    if spec.presets is not None:
        p.box("comment", 1000, 590, 80, text="preset", present=(200, 277, 45, 20))
        preset_menu = p.box("umenu", 1000, 610, 160, present=(245, 275, 120, 22), items=[])
        ask = p.msg(1170, 610, spec.presets.list_command)
        p.connect(init, 0, ask, 0)
        p.connect(refresh, 0, ask, 0)
        p.connect(ask, 0, udpsend, 0)
        preset_choice = p.obj(1000, 670, "zl reg")
        p.connect(preset_menu, 1, preset_choice, 1)
        trigger = p.box("textbutton", 1170, 640, 70, text="Trigger", present=(370, 275, 70, 22))
        p.connect(trigger, 0, preset_choice, 0)
        trigger_out = p.obj(1000, 700, f"prepend {spec.presets.trigger}")
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

    status = p.msg(20, 700, "ready", present=(10, 245, 500, 22))
    queued = p.obj(700, 420, "unpack 0 0")
    p.connect(route, outlet["/queued"], queued, 0)
    p.connect(queued, 0, last_job, 1)
    queued_text = p.obj(700, 450, "prepend set queued job")
    p.connect(route, outlet["/queued"], queued_text, 0)
    p.connect(queued_text, 0, status, 0)

    progress = p.obj(800, 420, "unpack 0 0.")
    p.connect(route, outlet["/progress"], progress, 0)
    p.box("comment", 20, 650, 80, text="progress", present=(10, 220, 60, 20))
    bar = p.box("slider", 20, 670, 300, 20, present=(70, 220, 440, 18), orientation=1,
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
    other_done = p.obj(900, 510, "prepend set done")  # /done /play, /done /stop, ...
    p.connect(done, len(spec.delivering), other_done, 0)
    p.connect(other_done, 0, status, 0)
    fan = p.obj(700, 540, "t s s s")
    p.connect(clip, 1, fan, 0)
    done_text = p.obj(900, 570, "prepend set done")
    p.connect(fan, 2, done_text, 0)
    p.connect(done_text, 0, status, 0)
    replace = p.obj(700, 570, "prepend replace")
    buffer = p.obj(700, 600, f"buffer~ {buffer_name}")
    p.chain(fan, replace, buffer)

    def fill(x: float, reply: str, menu: str, choices: list[str]) -> None:
        """``reply name...`` → clear ``menu`` and the stored choices, then append each name
        (no name: the menu stays empty; a bare reply reaches ``[route bang]`` as a bang)."""
        order = p.obj(x, 640, "t l b")
        p.connect(route, outlet[reply], order, 0)
        clear = p.msg(x + 100, 670, "clear")
        forget = p.msg(x + 160, 670, "zlclear")
        p.connect(order, 1, clear, 0)
        p.connect(clear, 0, menu, 0)
        p.connect(order, 1, forget, 0)
        for choice in choices:
            p.connect(forget, 0, choice, 0)
        names = p.obj(x, 670, "route bang")
        each = p.obj(x, 700, "zl iter 1")
        append = p.obj(x, 730, "prepend append")
        p.connect(order, 0, names, 0)
        p.connect(names, 1, each, 0)
        p.chain(each, append, menu)

    if spec.concepts is not None and concept_menu is not None:
        fill(260, spec.concepts.reply, concept_menu, concept_right)
    if spec.presets is not None and preset_menu is not None and preset_choice is not None:
        fill(1250, spec.presets.reply, preset_menu, [preset_choice])

    # -- playback on the server's audio device -----------------------------------------------
    jam_toggle = None
    if spec.jam is not None:
        p.box("comment", 1300, 740, 40, text="jam", present=(290, 392, 30, 20))
        jam_toggle = p.box("toggle", 1300, 760, 24, 24, present=(320, 390, 24, 24))
        jam_choice = p.obj(1300, 790, "sel 1 0")
        jam_on = p.msg(1300, 820, f"{spec.jam} on")
        jam_off = p.msg(1380, 820, f"{spec.jam} off")
        p.chain(jam_toggle, jam_choice, jam_on, udpsend)
        p.connect(jam_choice, 1, jam_off, 0)
        p.connect(jam_off, 0, udpsend, 0)
    if spec.play is not None:
        play_server = p.box("textbutton", 1000, 740, 100, text="Play (server)",
                            present=(80, 390, 100, 24))
        last_clip = p.obj(1000, 770, "zl reg")
        p.connect(clip, 0, last_clip, 1)
        quantum = f"{spec.quantum:g}" + ("" if "." in f"{spec.quantum:g}" else ".")
        play_out = p.msg(1000, 800, f"{spec.play} $1 {quantum}")
        p.chain(play_server, last_clip, play_out, udpsend)
    if spec.stop is not None:
        stop_server = p.box("textbutton", 1150, 740, 100, text="Stop (server)",
                            present=(185, 390, 100, 24))
        stop_order = p.obj(1150, 770, "t b b")
        stop_out = p.msg(1150, 800, spec.stop)
        p.chain(stop_server, stop_order, stop_out, udpsend)
        if jam_toggle is not None:  # /stop also ends jam mode
            jam_reset = p.msg(1230, 800, "set 0")
            p.connect(stop_order, 1, jam_reset, 0)
            p.connect(jam_reset, 0, jam_toggle, 0)

    # -- the clip: waveform, play -------------------------------------------------------------
    p.box("waveform~", 20, 740, 400, 80, present=(10, 305, 500, 80), buffername=buffer_name)
    play = p.box("textbutton", 430, 740, 60, text="Play", present=(10, 390, 60, 24))
    start = p.msg(430, 770, "1")
    player = p.obj(430, 800, f"play~ {buffer_name}")
    p.chain(play, start, player)
    if device:
        through = p.obj(560, 770, "plugin~")
        out = p.obj(560, 830, "plugout~")
        p.connect(through, 0, out, 0)
        p.connect(through, 1, out, 1)
    else:
        out = p.obj(430, 830, "dac~")
    p.connect(player, 0, out, 0)
    p.connect(player, 0, out, 1)

    if device:
        _live(p, spec, fan, udpsend)
    return p


def _live(p: MaxPatch, spec: ResolvedSpec, clip_fan: str, udpsend: str) -> None:
    """Live API: the clip goes into the highlighted clip slot; the set's tempo is followed."""
    ready = p.obj(950, 40, "live.thisdevice")
    slot_path = p.obj(950, 600, "live.path")
    slot = p.obj(950, 660, "live.object")
    ask_slot = p.msg(950, 570, "path live_set view highlighted_clip_slot")
    create = p.obj(850, 630, "prepend call create_audio_clip")
    order = p.obj(850, 600, "t s b")
    p.connect(clip_fan, 0, order, 0)
    p.connect(order, 1, ask_slot, 0)
    p.chain(ask_slot, slot_path)
    p.connect(slot_path, 0, slot, 1)
    p.connect(order, 0, create, 0)
    p.connect(create, 0, slot, 0)
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
        devicewidth=520.0, description="dreamsampler: text-to-music over OSC"
    )
    payload = json.dumps(patcher, indent=1).encode("utf-8") + b"\n\x00"
    return (_chunk(b"ampf", AMXD_AUDIO_EFFECT) + _chunk(b"meta", b"\x00\x00\x00\x00")
            + _chunk(b"ptch", payload))


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
