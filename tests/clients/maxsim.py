"""A tiny interpreter for the Max objects the generator uses, to run generated patches in tests.

Max cannot run on these machines, so the checks *execute* the generated patcher JSON: messages
flow depth-first along patch lines, right-to-left out of ``[t]``/``[unpack]`` as in Max, and what
reaches ``[udpsend]`` is recorded as OSC messages (address + atoms) for the contract to parse.
Only the behaviour the generated patches rely on is modelled; an object this module does not know
raises, so a new object in the generator needs a model here (and an entry in the counts table).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

Atom = int | float | str
Msg = list[Atom]
BANG: Msg = ["bang"]


def atoms(text: str) -> Msg:
    """Max-style parsing of box text: ``25`` int, ``2.5``/``10.`` float, else symbol."""
    out: Msg = []
    for word in text.split():
        try:
            out.append(int(word))
        except ValueError:
            try:
                out.append(float(word))
            except ValueError:
                out.append(word)
    return out


@dataclass
class Box:
    id: str
    maxclass: str
    text: str
    attrs: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def word(self) -> str:
        return self.text.split()[0] if self.maxclass == "newobj" else self.maxclass

    @property
    def args(self) -> Msg:
        return atoms(self.text)[1:] if self.maxclass == "newobj" else []


class MaxSim:
    """Runs one patcher dict (``{"patcher": {...}}``)."""

    def __init__(self, patcher: dict[str, Any], random_values: list[int] | None = None) -> None:
        body = patcher["patcher"]
        self.boxes = {b["box"]["id"]: Box(b["box"]["id"], b["box"]["maxclass"],
                                          b["box"].get("text", ""), b["box"])
                      for b in body["boxes"]}
        self.wires: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
        for line in body["lines"]:
            (src, out), (dst, inl) = line["patchline"]["source"], line["patchline"]["destination"]
            self.wires[(src, out)].append((dst, inl))
        self.sent: list[tuple[str, Msg]] = []  # (address, args) that reached udpsend
        self.effects: list[tuple[str, Msg]] = []  # (object text, message) reaching sinks
        self.random_values = list(random_values or [4242, 777, 31337])
        for box in self.boxes.values():
            if box.maxclass == "message":
                box.state["content"] = atoms(box.text)
            if box.maxclass in ("number", "flonum", "toggle", "slider", "live.numbox",
                                "live.text", "live.menu"):
                box.state["value"] = 0
            if box.maxclass == "live.menu":
                box.state["items"] = list(self.valueof(box).get("parameter_enum", []))
        self.depth = 0

    # -- finding boxes -------------------------------------------------------------------------

    def find(self, maxclass: str, text: str = "") -> Box:
        """The one box of ``maxclass`` whose text starts with ``text`` (error if 0 or several)."""
        found = [b for b in self.boxes.values()
                 if b.maxclass == maxclass and b.text.startswith(text)]
        assert len(found) == 1, f"{len(found)} boxes {maxclass} {text!r}"
        return found[0]

    def button(self, label: str) -> Box:
        """The ``live.text`` (or ``textbutton``) showing ``label``."""
        return next(b for b in self.boxes.values()
                    if b.maxclass in ("live.text", "textbutton") and b.attrs.get("text") == label)

    @staticmethod
    def valueof(box: Box) -> dict[str, Any]:
        """A Live parameter's attributes (empty for other boxes)."""
        return box.attrs.get("saved_attribute_attributes", {}).get("valueof", {})

    def param(self, longname: str) -> Box:
        """The box of the Live parameter ``longname``."""
        found = [b for b in self.boxes.values()
                 if self.valueof(b).get("parameter_longname") == longname]
        assert len(found) == 1, f"{len(found)} parameters named {longname!r}"
        return found[0]

    def labelled(self, maxclass: str, label: str) -> Box:
        """The ``maxclass`` box right under the comment ``label`` (same x, 20 px lower)."""
        comment = next(b for b in self.boxes.values()
                       if b.maxclass == "comment" and b.attrs.get("text") == label)
        x, y = comment.attrs["patching_rect"][:2]
        return next(b for b in self.boxes.values() if b.maxclass == maxclass
                    and b.attrs["patching_rect"][:2] == [x, y + 20])

    def number(self, label: str) -> Box:
        """The number box under the comment ``label``."""
        comment = next(b for b in self.boxes.values()
                       if b.maxclass == "comment" and b.attrs.get("text") == label)
        x = comment.attrs["patching_rect"][0]
        return next(b for b in self.boxes.values() if b.maxclass in ("number", "flonum")
                    and b.attrs["patching_rect"][0] == x)

    # -- running -------------------------------------------------------------------------------

    def loadbang(self) -> None:
        """Load the patch: Live parameters output their initial values and ``pattr`` its stored
        value (as Max restores them), then ``loadbang`` and ``live.thisdevice`` bang."""
        for box in list(self.boxes.values()):
            valueof = self.valueof(box)
            if valueof.get("parameter_initial_enable") and box.maxclass != "newobj":
                self.receive(box, 0, list(valueof["parameter_initial"]))
            if box.word == "pattr" and "restore" in box.attrs:
                box.state["value"] = list(box.attrs["restore"])
                self.output(box, 0, box.state["value"])
        for box in list(self.boxes.values()):
            if box.word in ("loadbang", "live.thisdevice"):
                self.output(box, 0, BANG)

    def click(self, box: Box) -> None:
        self.receive(box, 0, BANG)

    def output(self, box: Box, outlet: int, msg: Msg) -> None:
        self.depth += 1
        assert self.depth < 200, "message loop"
        for dst, inlet in self.wires.get((box.id, outlet), []):
            self.receive(self.boxes[dst], inlet, list(msg))
        self.depth -= 1

    def receive(self, box: Box, inlet: int, msg: Msg) -> None:
        handler = getattr(self, "_" + box.word.replace(".", "_").replace("~", "_tilde")
                          .replace("==", "eq").replace("*", "mul"), None)
        if handler is None:
            raise NotImplementedError(f"no model for {box.maxclass} {box.text!r}")
        handler(box, inlet, msg)

    # -- UI boxes ------------------------------------------------------------------------------

    def _message(self, box: Box, inlet: int, msg: Msg) -> None:
        if msg and msg[0] == "set":
            box.state["content"] = msg[1:]
            return
        args = [] if msg == BANG else msg
        out: Msg = []
        for atom in box.state["content"]:
            if isinstance(atom, str) and atom.startswith("$") and atom[1:].isdigit():
                out.append(args[int(atom[1:]) - 1])
            else:
                out.append(atom)
        self.output(box, 0, out)

    def _comment(self, box: Box, inlet: int, msg: Msg) -> None:
        pass

    def _textedit(self, box: Box, inlet: int, msg: Msg) -> None:
        if msg and msg[0] == "set":
            box.state["text"] = msg[1:]
        elif msg == BANG:
            self.output(box, 0, ["text", *box.state.get("text", [])])

    def type_text(self, box: Box, text: str) -> None:
        """The user types into a textedit (Max splits it into atoms)."""
        box.state["text"] = atoms(text)

    def _textbutton(self, box: Box, inlet: int, msg: Msg) -> None:
        self.output(box, 0, BANG)

    _button = _textbutton

    def _toggle(self, box: Box, inlet: int, msg: Msg) -> None:
        if msg and msg[0] == "set":  # set without output
            box.state["value"] = int(msg[1] != 0)
            return
        box.state["value"] = int(msg[0] != 0) if msg != BANG else int(not box.state["value"])
        self.output(box, 0, [box.state["value"]])

    def _number(self, box: Box, inlet: int, msg: Msg) -> None:
        if msg != BANG:
            value = msg[0]
            value = int(value) if box.maxclass == "number" else float(value)
            lo, hi = box.attrs.get("minimum"), box.attrs.get("maximum")
            if lo is not None:
                value = max(value, type(value)(lo))
            if hi is not None:
                value = min(value, type(value)(hi))
            box.state["value"] = value
        self.output(box, 0, [box.state["value"]])

    _flonum = _number

    def _slider(self, box: Box, inlet: int, msg: Msg) -> None:
        box.state["value"] = msg[0]

    def _umenu(self, box: Box, inlet: int, msg: Msg) -> None:
        items = box.state.setdefault("items", [])
        if msg[0] == "clear":  # empties the menu; nothing is output
            items.clear()
        elif msg[0] == "append":
            items.append(" ".join(str(a) for a in msg[1:]))
        elif isinstance(msg[0], int):
            self.output(box, 1, [items[msg[0]]])
            self.output(box, 0, [msg[0]])

    def _dropfile(self, box: Box, inlet: int, msg: Msg) -> None:
        pass

    _live_drop = _dropfile

    # live.* parameters: ``set`` changes the value without output; a value is clamped to the
    # parameter's range (ints truncated) and output

    def _live_numbox(self, box: Box, inlet: int, msg: Msg) -> None:
        valueof = self.valueof(box)
        if msg and msg[0] == "set":
            box.state["value"] = msg[1]
            return
        if msg != BANG:
            value = float(msg[0])
            value = min(max(value, valueof["parameter_mmin"]), valueof["parameter_mmax"])
            box.state["value"] = int(value) if valueof["parameter_type"] == 1 else value
        self.output(box, 0, [box.state["value"]])

    def _live_text(self, box: Box, inlet: int, msg: Msg) -> None:
        if box.attrs.get("mode") == 0:  # button mode: a bang per click
            self.output(box, 0, BANG)
            return
        if msg and msg[0] == "set":
            box.state["value"] = int(msg[1] != 0)
            return
        box.state["value"] = int(msg[0] != 0) if msg != BANG else int(not box.state["value"])
        self.output(box, 0, [box.state["value"]])

    def _live_menu(self, box: Box, inlet: int, msg: Msg) -> None:
        items = box.state["items"]
        if msg[0] == "_parameter_range":  # the items (Max: changes the enum, no output)
            box.state["items"] = [str(a) for a in msg[1:]]
        elif msg[0] == "set":
            box.state["value"] = int(msg[1])
        elif isinstance(msg[0], int | float):
            index = min(max(int(msg[0]), 0), len(items) - 1)
            box.state["value"] = index
            self.output(box, 1, atoms(items[index]))
            self.output(box, 0, [index])
        else:
            raise NotImplementedError(f"live.menu {msg}")

    def _pattr(self, box: Box, inlet: int, msg: Msg) -> None:
        box.state["value"] = msg
        self.output(box, 0, msg)

    def _js(self, box: Box, inlet: int, msg: Msg) -> None:
        self.effects.append((box.text, msg))

    _v8 = _js  # the device's embedded script: what reaches it is recorded (tests/clients/
    # test_live_clip.py runs the script itself in node)

    def script_output(self, outlet: int, msg: Msg) -> None:
        """The device's script sends ``msg`` out of ``outlet`` (what node showed it sends)."""
        self.output(self.find("newobj", "v8"), outlet, msg)

    def drop(self, box: Box, path: str) -> None:
        self.output(box, 0, [path])

    def _waveform_tilde(self, box: Box, inlet: int, msg: Msg) -> None:
        self.effects.append(("waveform~", msg))

    # -- objects -------------------------------------------------------------------------------

    def _loadbang(self, box: Box, inlet: int, msg: Msg) -> None:
        self.output(box, 0, BANG)

    def _t(self, box: Box, inlet: int, msg: Msg) -> None:
        kinds = box.args
        for outlet in reversed(range(len(kinds))):
            kind = kinds[outlet]
            if kind == "b":
                out = BANG
            elif kind in ("s", "l", "a"):
                out = msg
            elif kind == "i":
                out = [int(msg[0])]
            elif kind == "f":
                out = [float(msg[0])]
            else:
                raise NotImplementedError(f"t {kind}")
            self.output(box, outlet, out)

    def _route(self, box: Box, inlet: int, msg: Msg) -> None:
        for i, arg in enumerate(box.args):
            if msg and msg[0] == arg:
                self.output(box, i, msg[1:] or BANG)
                return
        self.output(box, len(box.args), msg)

    def _zl(self, box: Box, inlet: int, msg: Msg) -> None:
        mode = box.args[0]
        if inlet == 0 and msg == ["zlclear"]:  # every zl mode: forget the stored lists
            box.state.pop("stored", None)
            box.state.pop("right", None)
            return
        if mode == "reg":
            if inlet == 1:
                box.state["stored"] = msg
            elif msg == BANG:
                if "stored" in box.state:
                    self.output(box, 0, box.state["stored"])
            else:
                box.state["stored"] = msg
                self.output(box, 0, msg)
        elif mode == "join":
            if inlet == 1:
                box.state["right"] = msg
            else:
                self.output(box, 0, msg + box.state.get("right", []))
        elif mode == "iter":  # [zl iter N]: the list in chunks of N atoms (default 1)
            size = int(box.args[1]) if len(box.args) > 1 else 1
            for at in range(0, len(msg), size):
                self.output(box, 0, msg[at:at + size])
        elif mode == "slice":  # [zl slice N]: first N atoms left, the rest right (right first)
            size = int(box.args[1]) if len(box.args) > 1 else 0
            if msg[size:]:
                self.output(box, 1, msg[size:])
            self.output(box, 0, msg[:size])
        elif mode == "group":  # [zl group N]: collect; output at N atoms or on bang, then clear
            size = int(box.args[1]) if len(box.args) > 1 else 256
            if msg == BANG:
                stored = box.state.pop("stored", [])
                if stored:
                    self.output(box, 0, stored)
                return
            box.state["stored"] = box.state.get("stored", []) + msg
            if len(box.state["stored"]) >= size:
                self.output(box, 0, box.state.pop("stored"))
        else:
            raise NotImplementedError(f"zl {mode}")

    def _pak(self, box: Box, inlet: int, msg: Msg) -> None:
        slots = box.state.setdefault("slots", list(box.args))
        if msg != BANG:
            kind = type(box.args[inlet])
            slots[inlet] = kind(msg[0]) if kind in (int, float) else str(msg[0])
        if box.word == "pak" or inlet == 0:
            self.output(box, 0, list(slots))

    _pack = _pak

    def _unpack(self, box: Box, inlet: int, msg: Msg) -> None:
        for i in reversed(range(min(len(box.args), len(msg)))):
            kind = type(box.args[i])
            value = msg[i]
            self.output(box, i, [kind(value) if kind in (int, float) else value])

    def _prepend(self, box: Box, inlet: int, msg: Msg) -> None:
        if msg and msg[0] == "set" and box.text.split()[1:2] != ["set"]:
            box.state["prefix"] = msg[1:]
            return
        prefix = box.state.get("prefix", box.args)
        self.output(box, 0, [*prefix, *([] if msg == BANG else msg)])

    def _gate(self, box: Box, inlet: int, msg: Msg) -> None:
        if inlet == 0:
            box.state["open"] = msg[0]
        elif box.state.get("open", box.args[1] if len(box.args) > 1 else 0):
            self.output(box, int(box.state["open"]) - 1, msg)

    def _random(self, box: Box, inlet: int, msg: Msg) -> None:
        value = self.random_values.pop(0)
        self.random_values.append(value)
        self.output(box, 0, [value % int(box.args[0])])

    def _sel(self, box: Box, inlet: int, msg: Msg) -> None:
        """``[sel a b ...]``: a bang out of the matching outlet, else the input out of the last."""
        for i, arg in enumerate(box.args):
            if msg and msg[0] == arg:
                self.output(box, i, BANG)
                return
        self.output(box, len(box.args), msg)

    def _mul(self, box: Box, inlet: int, msg: Msg) -> None:
        if inlet == 0:
            self.output(box, 0, [float(msg[0]) * float(box.args[0])])

    def _metro(self, box: Box, inlet: int, msg: Msg) -> None:
        """Started: records it (tests fire ticks with :meth:`output` themselves)."""
        box.state["running"] = msg != [0]

    def _delay(self, box: Box, inlet: int, msg: Msg) -> None:
        """Scheduled: recorded; tests fire it with :meth:`output` (no clock here)."""
        self.effects.append((box.text, msg))

    def _record_tilde(self, box: Box, inlet: int, msg: Msg) -> None:
        self.effects.append((box.text, msg))

    def _eq(self, box: Box, inlet: int, msg: Msg) -> None:
        self.output(box, 0, [int(msg[0] == box.args[0])])

    def _conformpath(self, box: Box, inlet: int, msg: Msg) -> None:
        path = str(msg[0])
        if ":" in path.split("/")[0]:  # "Macintosh HD:/Users/x" → "/Users/x"
            path = path.split(":", 1)[1]
        self.output(box, 0, [path])

    def _deferlow(self, box: Box, inlet: int, msg: Msg) -> None:
        box.state["deferred"] = box.state.get("deferred", 0) + 1
        self.output(box, 0, msg)

    def _udpsend(self, box: Box, inlet: int, msg: Msg) -> None:
        assert isinstance(msg[0], str) and msg[0].startswith("/"), msg
        self.sent.append((msg[0], msg[1:]))

    def _udpreceive(self, box: Box, inlet: int, msg: Msg) -> None:
        pass

    def incoming(self, address: str, *args: Atom) -> None:
        """An OSC message arrives at ``[udpreceive]``."""
        self.output(self.find("newobj", "udpreceive"), 0, [address, *args])

    def _sink(self, box: Box, inlet: int, msg: Msg) -> None:
        self.effects.append((box.text, msg))

    _buffer_tilde = _play_tilde = _dac_tilde = _plugin_tilde = _plugout_tilde = _sink
    _selector_tilde = _sink
    _ezdac_tilde = _sink
    _live_object = _sink

    def _live_path(self, box: Box, inlet: int, msg: Msg) -> None:
        self.effects.append((box.text, msg))
        self.output(box, 0, ["id", 3])

    def _live_thisdevice(self, box: Box, inlet: int, msg: Msg) -> None:
        self.output(box, 0, BANG)

    def _live_observer(self, box: Box, inlet: int, msg: Msg) -> None:
        if inlet == 1:
            self.output(box, 0, [120.0])  # the set's tempo, on binding to an id
