"""The Pure Data (vanilla) client patch, generated from the resolved spec.

``pd_patches/dreamsampler.pd`` can be opened directly (server on 127.0.0.1:9000, replies on 9001)
or used as an abstraction ``[dreamsampler <server-port> <reply-port>]``. Every control also has a
global receive name (``ds-prompt``, ``ds-seed``, ``ds-generate``…) so other patches can drive it,
and every reply goes to ``[s ds-reply]``.

Outgoing messages are built as lists and go through ``[oscformat <address>]`` into
``[netsend -u -b]``; replies come from ``[netreceive -u -b]`` → ``[oscparse]`` → ``[list trim]`` →
``[route ...]``. Since ``netsend`` sends from another port than ``netreceive`` listens on, the patch
sends ``/notify 1 <reply-port>`` at load.

Pd vanilla has no menu object, so the concept and the preset are symbol boxes (``ds-concept``,
``ds-preset``); each passes a gate that drops the empty symbol, so an empty concept box sends no
``concept`` option and an empty preset box triggers nothing. A concept name entered is loaded on
the server (``/concept/load``, idempotent). Continue and Inpaint work on the last delivered clip
(``ds-extend``, ``ds-from``, ``ds-to``: bars at the session tempo).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from dreamsampler.clients.objects import pd_atom_counts, pd_object_counts
from dreamsampler.clients.spec import NumberControl, ResolvedSpec

HEADER = "#N canvas 40 40 980 760 12;"
DEFAULT_PROMPT = "ambient pad"


def escape(text: str) -> str:
    """Escape ``$``, ``,`` and ``;`` the way Pd writes them in a file."""
    return text.replace("$", "\\$").replace(",", " \\,").replace(";", " \\;")


def unescape(text: str) -> str:
    return text.replace("\\,", ",").replace("\\;", ";").replace("\\$", "$")


def osc_format_text(address: str) -> str:
    """``/param/seed`` → ``oscformat param seed`` (oscformat takes the address as words)."""
    return "oscformat " + " ".join(address.strip("/").split("/"))


@dataclass
class PdPatch:
    """A Pd patch being built: numbered boxes and checked connections."""

    lines: list[str] = field(default_factory=list)
    counts: list[tuple[int, int]] = field(default_factory=list)
    connections: list[tuple[int, int, int, int]] = field(default_factory=list)

    def _add(self, line: str, counts: tuple[int, int]) -> int:
        self.lines.append(line)
        self.counts.append(counts)
        return len(self.counts) - 1

    def obj(self, x: int, y: int, text: str) -> int:
        return self._add(f"#X obj {x} {y} {escape(text)};", pd_object_counts(text))

    def msg(self, x: int, y: int, text: str) -> int:
        return self._add(f"#X msg {x} {y} {escape(text)};", (1, 1))

    def comment(self, x: int, y: int, text: str) -> int:
        return self._add(f"#X text {x} {y} {escape(text)};", (0, 0))

    def atom(self, kind: str, x: int, y: int, width: int, label: str = "-", receive: str = "-",
             send: str = "-", lo: float = 0, hi: float = 0) -> int:
        """A ``floatatom``, ``symbolatom`` or ``listbox`` (label on top: position 2).

        Raises:
            ValueError: a label or name with whitespace (it would shift the box's fields).
        """
        if any(len(word.split()) != 1 for word in (label, receive, send)):
            raise ValueError(f"Pd atom label/receive/send must be one word: {label!r}")
        line = (f"#X {kind} {x} {y} {width} {lo:g} {hi:g} 2 {label} "
                f"{receive or '-'} {send or '-'} 0;")
        return self._add(line, pd_atom_counts(receive, send))

    def bng(self, x: int, y: int, label: str, receive: str = "empty") -> int:
        return self.obj(x, y, f"bng 25 250 50 0 empty {receive} {label} 30 12 0 12 "
                              "#fcfcfc #000000 #000000")

    def tgl(self, x: int, y: int, label: str, receive: str = "empty") -> int:
        return self.obj(x, y, f"tgl 20 0 empty {receive} {label} 25 10 0 12 "
                              "#fcfcfc #000000 #000000 0 1")

    def hsl(self, x: int, y: int, label: str, receive: str) -> int:
        return self.obj(x, y, f"hsl 300 18 0 1 0 0 empty {receive} {label} 0 -10 0 12 "
                              "#fcfcfc #000000 #000000 0 1")

    def array(self, x: int, y: int, name: str, size: int = 100) -> int:
        """A graph holding one array (one box in the parent patch)."""
        line = (f"#N canvas 0 50 450 250 (subpatch) 0;\n#X array {name} {size} float 0;\n"
                f"#X coords 0 1 {size} -1 300 100 1 0 0;\n#X restore {x} {y} graph;")
        return self._add(line, (0, 0))

    def connect(self, source: int, outlet: int, sink: int, inlet: int) -> None:
        """Connect, checking indices against the object tables.

        Raises:
            ValueError: an outlet or inlet the object does not have.
        """
        if outlet >= self.counts[source][1]:
            raise ValueError(f"{self.lines[source]!r} has no outlet {outlet}")
        if inlet >= self.counts[sink][0]:
            raise ValueError(f"{self.lines[sink]!r} has no inlet {inlet}")
        self.connections.append((source, outlet, sink, inlet))

    def chain(self, *boxes: int) -> None:
        """Connect outlet 0 → inlet 0 along ``boxes``."""
        for a, b in itertools.pairwise(boxes):
            self.connect(a, 0, b, 0)

    def render(self) -> str:
        out = [HEADER, *self.lines]
        out += [f"#X connect {a} {o} {b} {i};" for a, o, b, i in self.connections]
        return "\n".join(out) + "\n"


def _nonempty_gate(p: PdPatch, x: int, y: int) -> tuple[int, int, int]:
    """A gate for symbols: ``[t s s]`` stores the symbol in ``[symbol]`` and counts its
    characters (``[list fromsymbol]`` → ``[list length]`` → ``[sel 0]``).

    Returns:
        (inlet box, ``[sel 0]`` whose outlet 0 bangs for the empty symbol, ``[symbol]`` whose
        outlet 0 gives a non-empty symbol).
    """
    fan = p.obj(x, y, "t s s")
    store = p.obj(x + 110, y + 120, "symbol")
    chars = p.obj(x, y + 30, "list fromsymbol")
    length = p.obj(x, y + 60, "list length")
    empty = p.obj(x, y + 90, "sel 0")
    some = p.obj(x + 60, y + 120, "t b")
    p.connect(fan, 1, store, 1)
    p.chain(fan, chars, length, empty)
    p.connect(empty, 1, some, 0)
    p.connect(some, 0, store, 0)
    return fan, empty, store


def _seed_from_the_clock(p: PdPatch, load: int, roll: int, x: int, y: int) -> None:
    """Seed ``roll`` (a ``[random]``) at load, so the first dice differs per session (Pd seeds
    every new ``[random]`` alike: 743639 is the first roll out of ``[random 1000000]``).

    The seed mixes three bytes of ``/dev/urandom`` (read by ``[file handle]``; where it cannot be
    opened, as on Windows, zeros) with the microseconds ``[realtime]`` measures from its creation
    to the load bang, which vary from session to session.
    """
    fan = p.obj(x, y, "t b b")
    p.connect(load, 0, fan, 0)
    clock = p.obj(x + 90, y + 30, "realtime")
    p.connect(fan, 1, clock, 1)
    read = p.msg(x, y + 30, "open /dev/urandom, 3, close")
    handle = p.obj(x, y + 60, "file handle")
    p.connect(fan, 0, read, 0)
    p.connect(read, 0, handle, 0)
    no_device = p.msg(x + 90, y + 90, "0 0 0")
    p.connect(handle, 1, no_device, 0)
    mix = p.obj(x, y + 120, "expr ($f1*65536 + $f2*256 + $f3 + int($f4*1000)) % 16777216")
    p.connect(handle, 0, mix, 0)
    p.connect(no_device, 0, mix, 0)
    p.connect(clock, 0, mix, 3)
    seed = p.msg(x, y + 150, "seed $1")
    p.connect(mix, 0, seed, 0)
    p.connect(seed, 0, roll, 0)


def _typing_without_enter(p: PdPatch, x: int, y: int) -> tuple[int, int, int]:
    """Watch the keyboard (``[key]``): any key but Enter means text was typed and not yet
    confirmed. Returns (an outlet giving 1 while typed text is pending, 0 after Enter; the
    same inverted; the status message shown when typing starts or ends)."""
    key = p.obj(x, y, "key")
    which = p.obj(x, y + 30, "sel 10 13 0")  # Enter (Return, keypad), keys without a number
    entered = p.msg(x, y + 60, "0")
    typing = p.msg(x + 60, y + 60, "1")
    p.connect(key, 0, which, 0)
    p.connect(which, 0, entered, 0)
    p.connect(which, 1, entered, 0)
    p.connect(which, 3, typing, 0)
    changed = p.obj(x, y + 90, "change")
    p.connect(entered, 0, changed, 0)
    p.connect(typing, 0, changed, 0)
    pending = p.obj(x, y + 120, "t f f")
    p.connect(changed, 0, pending, 0)
    clear = p.obj(x + 60, y + 150, "== 0")
    p.connect(pending, 0, clear, 0)
    state = p.obj(x, y + 150, "sel 1 0")
    p.connect(pending, 1, state, 0)
    text = p.msg(x, y + 180, "list typing: press Enter to use what you typed")
    ready = p.msg(x + 200, y + 180, "list text entered")
    p.connect(state, 0, text, 0)
    p.connect(state, 1, ready, 0)
    fan = p.obj(x, y + 210, "t l")  # one outlet for both texts
    p.connect(text, 0, fan, 0)
    p.connect(ready, 0, fan, 0)
    return pending, clear, fan


def _option_template(numbers: tuple[NumberControl, ...]) -> str:
    """``seed $2 steps $3 ...`` for a ``[pack 0 f f ...]`` whose slot 1.. hold the numbers."""
    return " ".join(f"{n.key} ${i + 2}" for i, n in enumerate(numbers))


def build(spec: ResolvedSpec) -> PdPatch:
    """The whole Pd patch for ``spec``."""
    p = PdPatch()
    p.comment(20, 10, "dreamsampler - generated by 'dreamsampler patches' from the OSC contract; "
                      "do not edit (regenerate). Args: server port (9000) reply port (9001)")

    # -- network: connect, listen, register --------------------------------------------------
    net_x, net_y = 640, 60
    load = p.obj(net_x, net_y, "loadbang")
    reconnect = p.bng(net_x + 100, net_y - 5, "reconnect")
    start = p.obj(net_x, net_y + 40, "t b b")
    p.connect(load, 0, start, 0)
    p.connect(reconnect, 0, start, 0)
    server_port = p.obj(net_x + 120, net_y + 70, "f $1")
    server_default = p.obj(net_x + 120, net_y + 100, "sel 0")
    server_9000 = p.msg(net_x + 120, net_y + 130, "9000")
    connect = p.msg(net_x + 120, net_y + 160, "connect 127.0.0.1 $1")
    p.connect(start, 1, server_port, 0)
    p.chain(server_port, server_default, server_9000, connect)
    p.connect(server_default, 1, connect, 0)
    reply_port = p.obj(net_x, net_y + 70, "f $2")
    reply_default = p.obj(net_x, net_y + 100, "sel 0")
    reply_9001 = p.msg(net_x, net_y + 130, "9001")
    reply_fan = p.obj(net_x, net_y + 160, "t f f")
    p.connect(start, 0, reply_port, 0)
    p.chain(reply_port, reply_default, reply_9001, reply_fan)
    p.connect(reply_default, 1, reply_fan, 0)
    listen = p.msg(net_x + 60, net_y + 190, "listen $1")
    notify_args = p.msg(net_x, net_y + 220, "1 $1")
    notify = p.obj(net_x, net_y + 250, osc_format_text(spec.notify.address))
    p.connect(reply_fan, 1, listen, 0)
    p.chain(reply_fan, notify_args, notify)
    netsend = p.obj(net_x + 120, net_y + 300, "netsend -u -b")
    p.connect(connect, 0, netsend, 0)
    p.connect(notify, 0, netsend, 0)
    netreceive = p.obj(net_x + 60, net_y + 360, "netreceive -u -b")
    p.connect(listen, 0, netreceive, 0)

    # -- controls ------------------------------------------------------------------------------
    p.comment(20, 40, "prompt: click, type words, then press Enter (Pd keeps typed text only "
                      "after Enter)")
    prompt = p.atom("listbox", 20, 80, 40, "prompt", "ds-prompt", "-")
    prompt_default = p.msg(20, 110, f"list {DEFAULT_PROMPT}")
    prompt_send = p.obj(20, 140, "s ds-prompt")
    p.connect(load, 0, prompt_default, 0)
    p.connect(prompt_default, 0, prompt_send, 0)

    y = 190
    boxes: dict[str, int] = {}
    for i, number in enumerate(spec.numbers):
        x = 20 + 110 * i
        atom = p.atom("floatatom", x, y, 7, number.label, f"ds-{number.key}", "-",
                      number.minimum, number.maximum)
        init = p.msg(x, y + 30, number.literal())
        init_send = p.obj(x, y + 55, f"s ds-{number.key}")
        p.connect(load, 0, init, 0)
        p.connect(init, 0, init_send, 0)
        out = atom
        if number.is_int:  # Pd numbers are floats; keep ints integral
            out = p.obj(x, y + 85, "i")
            p.connect(atom, 0, out, 0)
        boxes[number.key] = out

    dice_gate = None
    seed = next((n for n in spec.numbers if n.dice), None)
    if seed is not None:
        dx, dy = 20, 330
        dice = p.bng(dx, dy, "dice")
        lock = p.tgl(dx + 90, dy, "lock", "ds-lock")
        unlocked = p.obj(dx + 90, dy + 30, "== 0")
        dice_gate = p.obj(dx + 40, dy + 60, "spigot 1")
        roll = p.obj(dx, dy + 90, "random 1000000")
        roll_send = p.obj(dx, dy + 120, f"s ds-{seed.key}")
        p.connect(lock, 0, unlocked, 0)
        p.connect(unlocked, 0, dice_gate, 1)
        p.connect(dice_gate, 0, roll, 0)
        p.connect(dice, 0, roll, 0)
        p.connect(roll, 0, roll_send, 0)
        _seed_from_the_clock(p, load, roll, 20, 1420)

    # typed text counts only after Enter: while keys were typed since the last Enter, Generate and
    # Transfer send nothing and the status line says so (Pd drops text typed into a box when
    # another box is clicked, so it would otherwise send the previous prompt silently)
    typed, entered, typing_text = _typing_without_enter(p, 480, 1420)
    not_sent = p.msg(480, 1660, "list not sent: press Enter to confirm what you typed")

    concept_right: list[int] = []

    def command(x: int, label: str, address: str, extra_first: int | None, y: int = 470,
                tail: str = "") -> int:
        """Button → [t b b] → dice, then [pack 0 f ...] → options (+ ``tail``) (→ concept) →
        prompt (→ input) → OSC; the boxes from ``y`` down."""
        numbers = spec.numbers_for(address)
        d = y - 470
        button = p.bng(x, y, label, f"ds-{label.lower()}")
        allowed = p.obj(x + 60, y, "spigot 1")
        refused = p.obj(x + 140, y, "spigot 0")
        p.connect(button, 0, allowed, 0)
        p.connect(button, 0, refused, 0)
        p.connect(entered, 0, allowed, 1)
        p.connect(typed, 0, refused, 1)
        p.connect(refused, 0, not_sent, 0)
        order = p.obj(x, 505 + d, "t b b")
        p.connect(allowed, 0, order, 0)
        if dice_gate is not None:
            p.connect(order, 1, dice_gate, 0)
        pack = p.obj(x, 535 + d, "pack 0" + " f" * len(numbers))
        p.connect(order, 0, pack, 0)
        for i, number in enumerate(numbers):
            p.connect(boxes[number.key], 0, pack, i + 1)
        options = p.msg(x, 565 + d, f"{_option_template(numbers)} {tail}".strip())
        with_prompt = p.obj(x, 595 + d, "list prepend")
        p.connect(pack, 0, options, 0)
        if spec.concepts is not None:  # right inlet: "concept <name>", or empty
            with_concept = p.obj(x + 110, 565 + d, "list append")
            p.connect(options, 0, with_concept, 0)
            p.connect(with_concept, 0, with_prompt, 0)
            concept_right.append(with_concept)
        else:
            p.connect(options, 0, with_prompt, 0)
        p.connect(prompt, 0, with_prompt, 1)
        last = with_prompt
        if extra_first is not None:
            with_input = p.obj(x, 625 + d, "list prepend")
            p.connect(with_prompt, 0, with_input, 0)
            p.connect(extra_first, 0, with_input, 1)
            last = with_input
        osc = p.obj(x, 655 + d, osc_format_text(address))
        p.connect(last, 0, osc, 0)
        p.connect(osc, 0, netsend, 0)
        return button

    command(20, "Generate", spec.generate.address, None)

    # transfer input: a symbol box (also set by the open button)
    p.comment(250, 330, "input clip for Transfer:")
    open_button = p.bng(250, 360, "open...")
    panel = p.obj(250, 390, "openpanel")
    panel_send = p.obj(250, 420, "s ds-input")
    p.chain(open_button, panel, panel_send)
    input_box = p.atom("symbolatom", 360, 360, 30, "input", "ds-input", "-")
    command(250, "Transfer", spec.transfer.address, input_box)

    # cancel: the last queued job id
    cancel_button = p.bng(480, 470, "Cancel", "ds-cancel")
    last_job = p.obj(480, 505, "f")
    cancel_list = p.obj(480, 535, "list")
    cancel_osc = p.obj(480, 565, osc_format_text(spec.cancel.address))
    p.chain(cancel_button, last_job, cancel_list, cancel_osc, netsend)

    # continue / inpaint the last delivered clip: [pack s f (f)] holds "<clip> <numbers>" (a
    # number change re-outputs it through [t b f]); the unit goes after the options
    region_heads: list[int] = []
    ry0 = 1760
    if spec.region_numbers:
        p.comment(20, ry0, f"Continue / Inpaint the last clip (in {spec.region_unit} at the "
                           "session tempo):")
    region_boxes: dict[str, int] = {}
    for i, number in enumerate(spec.region_numbers):
        x = 20 + 110 * i
        atom = p.atom("floatatom", x, ry0 + 30, 7, number.label, f"ds-{number.key}", "-",
                      number.minimum, number.maximum)
        init = p.msg(x, ry0 + 60, number.literal())
        init_send = p.obj(x, ry0 + 85, f"s ds-{number.key}")
        p.connect(load, 0, init, 0)
        p.connect(init, 0, init_send, 0)
        region_boxes[number.key] = atom
    for x, message, keys in ((20, spec.continue_, ("extend",)), (250, spec.inpaint,
                                                                 ("from", "to"))):
        if message is None:
            continue
        head = p.obj(x, ry0 + 120, "pack s" + " f" * len(keys))
        no_clip = p.msg(x + 80, ry0 + 120, "symbol no-clip-yet")
        p.connect(load, 0, no_clip, 0)
        p.connect(no_clip, 0, head, 0)
        for i, key in enumerate(keys):
            update = p.obj(x + 80 + 60 * i, ry0 + 150, "t b f")
            p.connect(region_boxes[key], 0, update, 0)
            p.connect(update, 1, head, i + 1)
            p.connect(update, 0, head, 0)
        region_heads.append(head)
        command(x, message.address.strip("/").capitalize(), message.address, head,
                y=ry0 + 190, tail=f"unit {spec.region_unit}")

    # concept: a symbol box; empty (the default, or "symbol" sent to ds-concept) sends none;
    # a name is loaded on the server (/concept/load: idempotent)
    if spec.concepts is not None:
        p.comment(480, 330, "concept (loaded on the server; empty = none):")
        concept = p.atom("symbolatom", 480, 360, 16, "concept", "ds-concept", "-")
        clear = p.msg(640, 360, "symbol")
        clear_send = p.obj(640, 390, "s ds-concept")
        p.connect(clear, 0, clear_send, 0)
        gate, empty, named = _nonempty_gate(p, 20, 1080)
        p.connect(concept, 0, gate, 0)
        option = p.msg(130, 1230, f"{spec.concepts.option} $1")
        p.connect(named, 0, option, 0)
        load_named = p.msg(250, 1230, "list $1")
        load_osc = p.obj(250, 1260, osc_format_text(spec.concepts.load))
        p.connect(named, 0, load_named, 0)
        p.chain(load_named, load_osc, netsend)
        for join in concept_right:
            p.connect(option, 0, join, 1)
            p.connect(empty, 0, join, 1)  # a bang empties [list append]'s right inlet

    # -- replies -------------------------------------------------------------------------------
    rx, ry = 640, 460
    parse = p.obj(rx + 60, ry, "oscparse")
    trim = p.obj(rx + 60, ry + 30, "list trim")
    p.chain(netreceive, parse, trim)
    reply_out = p.obj(rx + 200, ry + 60, "s ds-reply")
    p.connect(trim, 0, reply_out, 0)
    routed = [r.strip("/") for r in spec.replies]  # no menus in Pd vanilla: no list replies
    route = p.obj(rx, ry + 60, "route " + " ".join(routed))
    p.connect(trim, 0, route, 0)
    outlet = {name: i for i, name in enumerate(routed)}

    p.atom("listbox", 20, 720, 60, "status", "ds-status", "-")
    status_send = p.obj(rx, ry + 270, "s ds-status")
    p.connect(not_sent, 0, status_send, 0)
    p.connect(typing_text, 0, status_send, 0)

    queued = p.obj(rx, ry + 90, "unpack f f")
    p.connect(route, outlet["queued"], queued, 0)
    p.connect(queued, 0, last_job, 1)
    queued_text = p.msg(rx, ry + 120, "list queued job $1 position $2")
    p.connect(route, outlet["queued"], queued_text, 0)
    p.connect(queued_text, 0, status_send, 0)

    progress = p.obj(rx + 120, ry + 90, "unpack f f")
    p.connect(route, outlet["progress"], progress, 0)
    progress_send = p.obj(rx + 120, ry + 120, "s ds-progress")
    p.connect(progress, 1, progress_send, 0)
    p.hsl(20, 680, "progress", "ds-progress")

    failed = p.obj(rx + 240, ry + 90, "list prepend failed")
    p.connect(route, outlet["fail"], failed, 0)
    p.connect(failed, 0, status_send, 0)

    done = p.obj(rx + 60, ry + 150, "route " + " ".join(spec.delivering))
    p.connect(route, outlet["done"], done, 0)
    delivered = p.obj(rx + 60, ry + 165, "t l l")  # right first: Play knows the job first
    clip = p.obj(rx + 60, ry + 180, "unpack f s")
    for i in range(len(spec.delivering)):
        p.connect(done, i, delivered, 0)
    p.connect(delivered, 0, clip, 0)
    for head in region_heads:  # Continue / Inpaint work on the last delivered clip
        p.connect(clip, 1, head, 0)
    other_done = p.obj(rx + 280, ry + 180, "list prepend done")  # /done /stop, /done /jam...
    p.connect(done, len(spec.delivering), other_done, 0)
    p.connect(other_done, 0, status_send, 0)
    # "done <path>", and the stems folder after it when the job made stems (issue 19)
    path_and_stems = p.obj(rx + 170, ry + 195, "list split 1")
    p.connect(delivered, 0, path_and_stems, 0)
    done_text = p.obj(rx + 170, ry + 210, "list prepend done")
    p.connect(path_and_stems, 1, done_text, 0)
    p.connect(done_text, 0, status_send, 0)
    read = p.msg(rx + 60, ry + 210, "read -resize $1 ds-clip")
    filer = p.obj(rx + 60, ry + 240, "soundfiler")
    p.connect(clip, 1, read, 0)
    p.connect(read, 0, filer, 0)
    loaded = p.obj(rx + 170, ry + 240, "s ds-clip-loaded")
    p.connect(filer, 0, loaded, 0)

    # -- the clip: array, play at the file's sample rate ---------------------------------------
    p.array(20, 780, "ds-clip")
    play = p.bng(360, 780, "play")
    rate = p.obj(480, 780, "unpack f f f f s")  # rate header channels bytes endianness
    rate_store = p.obj(480, 810, "f")
    frames_store = p.obj(360, 840, "f")
    p.connect(filer, 1, rate, 0)
    p.connect(rate, 0, rate_store, 1)
    p.connect(filer, 0, frames_store, 1)
    play_order = p.obj(360, 810, "t b b")
    p.connect(play, 0, play_order, 0)
    p.connect(play_order, 1, rate_store, 0)
    millis = p.obj(360, 870, "expr $f1*1000/$f2")
    p.connect(rate_store, 0, millis, 1)
    p.connect(play_order, 0, frames_store, 0)
    p.connect(frames_store, 0, millis, 0)
    ramp = p.msg(360, 900, "0, 1 $1, 0 0 $1")
    line = p.obj(360, 930, "vline~")
    scale = p.obj(360, 960, "*~ 0")
    p.connect(filer, 0, scale, 1)
    reader = p.obj(360, 990, "tabread4~ ds-clip")
    dac = p.obj(360, 1020, "dac~")
    p.chain(millis, ramp, line, scale, reader, dac)
    p.connect(reader, 0, dac, 1)
    p.msg(480, 900, "; pd dsp 1")
    p.msg(580, 900, "; pd dsp 0")
    p.comment(480, 940, "DSP on/off: play is silent while DSP is off")
    level = p.obj(360, 1050, "env~")  # the output level in dB (100 = full scale; 0 = silence)
    level_send = p.obj(360, 1080, "s ds-level")
    p.chain(reader, level, level_send)
    p.atom("floatatom", 480, 980, 5, "level(dB)", "ds-level", "-")

    _server_playback(p, spec, netsend, delivered)
    return p


def _server_playback(p: PdPatch, spec: ResolvedSpec, netsend: int, delivered: int) -> None:
    """Preset trigger, Play / Stop and jam on the server's audio device (``delivered``: the
    ``[t l l]`` whose outlet 1 gives ``<job id> <path>`` of each delivered clip, before the clip
    is loaded; Play sends the last job id)."""
    x, y = 250, 1080
    p.comment(x, y, "on the server (its audio device: serve --audio-out):")
    if spec.presets is not None:
        preset = p.atom("symbolatom", x, y + 60, 16, "preset", "ds-preset", "-")
        trigger = p.bng(x + 160, y + 55, "trigger", "ds-trigger")
        chosen = p.obj(x + 160, y + 90, "symbol")
        p.connect(preset, 0, chosen, 1)
        p.connect(trigger, 0, chosen, 0)
        gate, _, named = _nonempty_gate(p, x + 160, y + 120)
        p.connect(chosen, 0, gate, 0)
        as_list = p.obj(x + 270, y + 270, "list")
        trigger_osc = p.obj(x + 270, y + 300, osc_format_text(spec.presets.trigger))
        p.chain(named, as_list, trigger_osc, netsend)
    if spec.play is not None:
        play = p.bng(x + 330, y + 55, "play-server", "ds-play")
        job = p.obj(x + 400, y + 60, "unpack f s")
        p.connect(delivered, 1, job, 0)
        last_clip = p.obj(x + 330, y + 90, "f -1")
        p.connect(job, 0, last_clip, 1)
        delivered = p.obj(x + 330, y + 120, "sel -1")  # no clip yet: nothing to play
        play_args = p.msg(x + 330, y + 150, f"$1 {spec.quantum:g}")
        play_osc = p.obj(x + 330, y + 180, osc_format_text(spec.play))
        p.chain(play, last_clip, delivered)
        p.connect(delivered, 1, play_args, 0)
        p.chain(play_args, play_osc, netsend)
    if spec.jam is not None:
        jam = p.tgl(x + 560, y + 55, "jam", "ds-jam")
        jam_choice = p.obj(x + 560, y + 90, "sel 1 0")
        jam_on = p.msg(x + 560, y + 120, "list on")
        jam_off = p.msg(x + 620, y + 120, "list off")
        jam_osc = p.obj(x + 560, y + 150, osc_format_text(spec.jam))
        p.chain(jam, jam_choice, jam_on, jam_osc, netsend)
        p.connect(jam_choice, 1, jam_off, 0)
        p.connect(jam_off, 0, jam_osc, 0)
    if spec.stop is not None:
        stop = p.bng(x + 460, y + 55, "stop-server", "ds-stop")
        stop_order = p.obj(x + 460, y + 90, "t b b")
        stop_list = p.obj(x + 460, y + 120, "list")
        stop_osc = p.obj(x + 460, y + 150, osc_format_text(spec.stop))
        p.chain(stop, stop_order, stop_list, stop_osc, netsend)
        if spec.jam is not None:  # /stop also ends jam mode: the toggle goes off silently
            jam_reset = p.msg(x + 460, y + 210, "; ds-jam set 0")
            p.connect(stop_order, 1, jam_reset, 0)


def render(spec: ResolvedSpec) -> str:
    """The ``.pd`` file text for ``spec``."""
    return build(spec).render()


@dataclass(frozen=True)
class PdBox:
    """One box of a parsed top-level Pd canvas."""

    index: int
    kind: str  # obj, msg, text, floatatom, symbolatom, listbox, graph
    text: str  # for obj/msg/text: the content, unescaped; for atoms: the raw fields
    x: int = 0  # position on the canvas (pixels, top left)
    y: int = 0

    @property
    def words(self) -> list[str]:
        return self.text.split()


def parse(text: str) -> tuple[list[PdBox], list[tuple[int, int, int, int]]]:
    """The top-level boxes and connections of a ``.pd`` file (subpatch contents are skipped).

    Raises:
        ValueError: a record the parser does not understand.
    """
    records = [r.strip() for r in re.split(r"(?<!\\);\s*\n", text) if r.strip()]
    boxes: list[PdBox] = []
    connections: list[tuple[int, int, int, int]] = []
    depth = 0
    for record in records:
        words = record.rstrip(";").split()
        head = " ".join(words[:2])
        if head == "#N canvas":
            depth += 1
            continue
        if head == "#X restore":
            depth -= 1
            if depth == 1:
                boxes.append(PdBox(len(boxes), "graph", " ".join(words[4:]), int(words[2]),
                                   int(words[3])))
            continue
        if depth > 1 or head in ("#X array", "#X coords", "#A"):
            continue
        if head == "#X connect":
            a, o, b, i = (int(w) for w in words[2:6])
            connections.append((a, o, b, i))
        elif head in ("#X obj", "#X msg", "#X text"):
            boxes.append(PdBox(len(boxes), words[1], unescape(" ".join(words[4:])),
                               int(words[2]), int(words[3])))
        elif head in ("#X floatatom", "#X symbolatom", "#X listbox"):
            boxes.append(PdBox(len(boxes), words[1], " ".join(words[2:]), int(words[2]),
                               int(words[3])))
        else:
            raise ValueError(f"unknown Pd record: {record[:60]!r}")
    return boxes, connections
