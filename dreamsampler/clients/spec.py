"""What the Max, Live and Pd clients contain: a small declarative spec keyed by contract addresses.

The generators never hand-list OSC addresses: every control names the contract entry it drives (a
command, or an option key of a command), and :func:`resolve` looks each one up in
:data:`~dreamsampler.server.contract.COMMANDS` / :data:`~dreamsampler.server.contract.REPLIES`.
Controls whose address or option is not in the contract (or has another shape than the patches
build) are *skipped with a warning*, so a patch generated against an older contract simply lacks
them. Types, ranges and units come from the contract; defaults from the server's config defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from dreamsampler import schema
from dreamsampler.config import Defaults, Limits
from dreamsampler.server.contract import COMMANDS, REPLIES, Arg, Message

log = logging.getLogger(__name__)


class SpecError(ValueError):
    """The spec names a core address that is missing from the contract, or types disagree."""


# -- the declarative spec --------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """A number box whose value is sent as a ``key value`` option of generation commands.

    Attributes:
        key: option name in the contract (``seed``, ``steps``…).
        label: what the patch shows next to the box (one word: Pd labels cannot hold spaces).
        commands: commands the option is appended to (only those whose contract has the option).
        ui_max: upper bound for the box when neither the contract nor the limits give one.
        dice: add a dice button and a lock toggle (random value per generation unless locked).
    """

    key: str
    label: str
    commands: tuple[str, ...] = ("/gen", "/transfer")
    ui_max: float | None = None
    dice: bool = False


@dataclass(frozen=True)
class ConceptMenu:
    """A menu of the concepts one can load: filled from ``reply`` (``stride`` atoms per concept,
    the name first: ``/concept.available name method family loaded ...``) after sending
    ``list_command`` (at load and on *refresh*); choosing one sends ``load <name>`` (idempotent on
    the server) and the name goes out as option ``option`` of the generation commands. A new list
    clears the choice; no choice sends no option. Pd vanilla has no menu: a symbol box instead,
    sent only when not empty."""

    list_command: str = "/concept/available"
    reply: str = "/concept.available"
    option: str = "concept"
    load: str = "/concept/load"
    stride: int = 4


@dataclass(frozen=True)
class Region:
    """Continue and Inpaint buttons that work on the last clip the server delivered: Continue
    sends ``continue_ <clip> <extend> <prompt> <options> unit <unit>``, Inpaint sends
    ``inpaint <clip> <from> <to> <prompt> <options> unit <unit>``; the three numbers (in bars at
    the session tempo by default) are number boxes with these defaults."""

    continue_: str = "/continue"
    inpaint: str = "/inpaint"
    unit: str = "bars"
    extend: float = 1.0
    start: float = 0.0
    end: float = 1.0
    ui_max: float = 64.0


@dataclass(frozen=True)
class PresetMenu:
    """A menu of the server's presets (filled like :class:`ConceptMenu`) and a Trigger button
    that sends ``trigger <name>``; Pd: a symbol box and a trigger bang."""

    list_command: str = "/preset/list"
    reply: str = "/preset.list"
    trigger: str = "/preset/trigger"


@dataclass(frozen=True)
class Transport:
    """Playback on the server's audio device: Play sends ``play <last delivered job id>
    <quantum>`` (quantized to ``quantum`` beats: one 4/4 bar), Stop sends ``stop`` (and turns the
    jam toggle off), the jam toggle sends ``jam on`` / ``jam off``."""

    play: str = "/play"
    quantum: float = 4.0
    stop: str = "/stop"
    jam: str = "/jam"


@dataclass(frozen=True)
class TempoFollow:
    """Live device only: send the set's tempo to ``address`` (one float, BPM) when it changes."""

    address: str = "/tempo"


@dataclass(frozen=True)
class PatchSpec:
    """Everything a client patch shows and sends (see :data:`SPEC`)."""

    generate: str = "/gen"
    transfer: str = "/transfer"
    cancel: str = "/cancel"
    notify: str = "/notify"
    numbers: tuple[Number, ...] = ()
    concepts: ConceptMenu | None = None
    presets: PresetMenu | None = None
    transport: Transport | None = None
    tempo: TempoFollow | None = None
    region: Region | None = None
    #: replies the patches route (each must be in the contract's REPLIES)
    replies: tuple[str, ...] = ("/queued", "/progress", "/done", "/fail")


_ALL = ("/gen", "/transfer", "/continue", "/inpaint")

UI_MAX = {"guidance": 20.0}
"""Upper bounds of number boxes tighter than the parameter's range (a playable sweep)."""


def schema_numbers(params: Sequence[schema.Param] | None = None) -> tuple[Number, ...]:
    """A number box per :data:`~dreamsampler.schema.PATCH` parameter of the schema, in schema
    order, labelled ``key`` or ``key(unit)``, sent with the generation commands that take it;
    the seed gets the dice and lock (``bars`` 0 = use duration: one-shots in seconds, loops in
    bars)."""
    return tuple(
        Number(p.osc_key, f"{p.osc_key}({p.unit})" if p.unit else p.osc_key,
               commands=tuple(a for a in _ALL if a in p.takes), ui_max=UI_MAX.get(p.osc_key),
               dice=p.name == "seed")
        for p in schema.taken_by(schema.PATCH, params)
    )


SPEC = PatchSpec(
    numbers=schema_numbers(),
    concepts=ConceptMenu(),
    presets=PresetMenu(),
    transport=Transport(),
    tempo=TempoFollow(),
    region=Region(),
)

# -- resolved against the contract ----------------------------------------------------------------


@dataclass(frozen=True)
class NumberControl:
    """A number control with type, range and default taken from the contract and config."""

    key: str
    label: str
    type: str
    minimum: float
    maximum: float
    default: float
    unit: str
    commands: tuple[str, ...]
    dice: bool = False

    @property
    def is_int(self) -> bool:
        return self.type == "i"

    def literal(self, value: float | None = None) -> str:
        """The value as a patch literal: ``7`` for ints, ``2.5``/``10.`` for floats (Max style)."""
        v = self.default if value is None else value
        if self.is_int:
            return str(int(v))
        text = f"{float(v):g}"
        return text if "." in text or "e" in text else text + "."


@dataclass(frozen=True)
class ResolvedSpec:
    """The spec after lookup: only controls the contract supports, plus what was skipped."""

    generate: Message
    transfer: Message
    cancel: Message
    notify: Message
    numbers: tuple[NumberControl, ...]
    concepts: ConceptMenu | None
    tempo: str | None
    replies: tuple[str, ...]
    skipped: tuple[str, ...] = field(default=())
    presets: PresetMenu | None = None
    #: play / stop / jam addresses that resolved (None: not in the contract)
    play: str | None = None
    stop: str | None = None
    jam: str | None = None
    quantum: float = 4.0
    #: /continue and /inpaint (None: not in the contract), their numbers (extend; from, to:
    #: positional, not options) and the unit they are sent in
    continue_: Message | None = None
    inpaint: Message | None = None
    region_numbers: tuple[NumberControl, ...] = ()
    region_unit: str = "bars"

    def numbers_for(self, address: str) -> tuple[NumberControl, ...]:
        """The number controls appended as options to ``address``, in spec order."""
        return tuple(n for n in self.numbers if address in n.commands)

    @property
    def sent_addresses(self) -> tuple[str, ...]:
        """Every address the patches send (for the docs and the checks)."""
        sent = [self.notify.address, self.generate.address, self.transfer.address,
                self.cancel.address]
        if self.concepts:
            sent += [self.concepts.list_command, self.concepts.load]
        if self.presets:
            sent += [self.presets.list_command, self.presets.trigger]
        sent += [m.address for m in (self.continue_, self.inpaint) if m is not None]
        sent += [a for a in (self.play, self.stop, self.jam, self.tempo) if a]
        return tuple(sent)

    @property
    def routed_replies(self) -> tuple[str, ...]:
        """Replies the Max patches route: the core ones plus the menus' lists."""
        return (*self.replies, *((self.concepts.reply,) if self.concepts else ()),
                *((self.presets.reply,) if self.presets else ()))

    @property
    def delivering(self) -> tuple[str, ...]:
        """Commands whose ``/done <address> <job id> <path>`` delivers a clip."""
        return (self.generate.address, self.transfer.address,
                *(m.address for m in (self.continue_, self.inpaint) if m is not None),
                *((self.presets.trigger,) if self.presets else ()))


def _core(commands: dict[str, Message], address: str) -> Message:
    try:
        return commands[address]
    except KeyError:
        raise SpecError(f"core address {address} is not in the contract") from None


#: the positional argument shapes the generators build (``s*``: a prompt of several atoms)
CORE_SHAPES = {"generate": ["s*"], "transfer": ["s", "s*"], "cancel": ["i"], "notify": ["i", "i"]}


def _shape(message: Message) -> list[str]:
    return ["s*" if a.rest else a.type for a in message.args]


def _check(commands: dict[str, Message], address: str, shape: list[str]) -> str:
    """Why ``address`` cannot be sent as ``shape`` (empty when it can).

    ``shape`` lists the positional arguments the patch sends (``s*``: several atoms); the
    command must take them in that order and require no others.
    """
    message = commands.get(address)
    if message is None:
        return f"command {address} is not in the contract"
    args = list(message.args)
    if len(args) < len(shape) or _shape(message)[:len(shape)] != shape or any(
            a.required for a in args[len(shape):]):
        return f"{message.signature} does not take {shape or 'no arguments'}"
    return ""


def _in_range(arg: Arg, value: float, address: str) -> str:
    if (arg.minimum is not None and value < arg.minimum) or (
            arg.maximum is not None and value > arg.maximum):
        return f"{address} {arg.name} {value:g} is out of the contract's range"
    return ""


def _range(key: str, arg: Arg, number: Number) -> tuple[float, float]:
    limits = Limits()
    limit = {"steps": limits.max_steps, "duration": limits.max_duration}.get(key)
    # the tighter of the contract's maximum and the server's default limit
    bounds = [m for m in (arg.maximum, limit) if m is not None]
    maximum = min(bounds) if bounds else None
    if maximum is None:
        maximum = number.ui_max if number.ui_max is not None else 1000.0
    return (arg.minimum if arg.minimum is not None else 0.0), float(maximum)


def _default(arg: Arg, minimum: float) -> float:
    value = getattr(Defaults(), arg.target, None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return minimum


def resolve(
    spec: PatchSpec = SPEC,
    commands: dict[str, Message] | None = None,
    replies: dict[str, Message] | None = None,
) -> ResolvedSpec:
    """Look every spec entry up in the contract; skip (with a warning) what it lacks.

    Args:
        spec: the declarative spec.
        commands, replies: the contract (defaults: :data:`COMMANDS`, :data:`REPLIES`).

    Raises:
        SpecError: a core command (generate, transfer, cancel, notify) or a routed core reply is
            missing, or an option has different types in different commands.
    """
    commands = COMMANDS if commands is None else commands
    replies = REPLIES if replies is None else replies
    skipped: list[str] = []
    numbers: list[NumberControl] = []
    for number in spec.numbers:
        args: list[tuple[str, Arg]] = []
        for address in number.commands:
            option = commands[address].option(number.key) if address in commands else None
            if option is not None:
                args.append((address, option))
        if not args:
            skipped.append(f"number '{number.key}': no option '{number.key}' in "
                           f"{', '.join(number.commands)} (not in the contract yet)")
            continue
        types = {a.type for _, a in args}
        if len(types) != 1 or types - {"i", "f"}:
            raise SpecError(f"option '{number.key}' has types {sorted(types)}; need one of i/f")
        arg = args[0][1]
        lo, hi = _range(number.key, arg, number)
        numbers.append(NumberControl(
            key=number.key, label=number.label, type=arg.type, minimum=lo, maximum=hi,
            default=min(max(_default(arg, lo), lo), hi), unit=arg.unit,
            commands=tuple(address for address, _ in args), dice=number.dice,
        ))
    concepts = spec.concepts
    if concepts is not None:
        missing = [what for what, ok in (
            (f"command {concepts.list_command}", concepts.list_command in commands),
            (f"reply {concepts.reply}", concepts.reply in replies),
            (f"command {concepts.load} s:name", not _check(commands, concepts.load, ["s"])),
            *((f"option '{concepts.option}' of {address}",
               address in commands and commands[address].option(concepts.option))
              for address in (spec.generate, spec.transfer)),
        ) if not ok]
        if missing:
            skipped.append(f"concept menu: {', '.join(missing)} not in the contract yet")
            concepts = None

    presets = spec.presets
    if presets is not None:
        problems = [p for p in (
            _check(commands, presets.list_command, []),
            _check(commands, presets.trigger, ["s*"]),
            "" if presets.reply in replies else f"reply {presets.reply} is not in the contract",
        ) if p]
        if problems:
            skipped.append(f"preset menu: {'; '.join(problems)}")
            presets = None

    play = stop = jam = None
    quantum = 4.0
    if spec.transport is not None:
        t = spec.transport
        quantum = t.quantum
        for label, address, shape in (("Play", t.play, ["i", "f"]), ("Stop", t.stop, []),
                                      ("Jam", t.jam, ["s"])):
            problem = _check(commands, address, shape)
            if not problem and label == "Play":
                problem = _in_range(commands[address].args[1], quantum, address)
            if problem:
                skipped.append(f"{label} button: {problem}")
            elif label == "Play":
                play = address
            elif label == "Stop":
                stop = address
            else:
                jam = address

    tempo = spec.tempo.address if spec.tempo else None
    if tempo is not None:
        problem = _check(commands, tempo, ["f"])
        if problem:
            skipped.append(f"Live tempo follower: {problem}")
            tempo = None

    continue_ = inpaint = None
    region_numbers: list[NumberControl] = []
    if spec.region is not None:
        r = spec.region
        for label, address, shape in (("Continue", r.continue_, ["s", "f", "s*"]),
                                      ("Inpaint", r.inpaint, ["s", "f", "f", "s*"])):
            problem = _check(commands, address, shape)
            if not problem and commands[address].option("unit") is None:
                problem = f"{address} has no unit option"
            if problem:
                skipped.append(f"{label} button: {problem}")
                continue
            message = commands[address]
            if label == "Continue":
                continue_ = message
                wanted = (("amount", "extend", "extend", r.extend),)
            else:
                inpaint = message
                wanted = (("start", "from", "from", r.start), ("end", "to", "to", r.end))
            for arg_name, key, text, default in wanted:
                arg = next(a for a in message.args if a.name == arg_name)
                lo = arg.minimum if arg.minimum is not None else 0.0
                hi = min(arg.maximum, r.ui_max) if arg.maximum is not None else r.ui_max
                region_numbers.append(NumberControl(
                    key=key, label=f"{text}({r.unit[:-1] if key != 'extend' else r.unit})",
                    type="f", minimum=float(lo), maximum=float(hi), default=float(default),
                    unit=r.unit, commands=(address,)))

    for reply in spec.replies:
        if reply not in replies:
            raise SpecError(f"routed reply {reply} is not in the contract")
    for role, shape in CORE_SHAPES.items():
        message = _core(commands, getattr(spec, role))
        if _shape(message) != shape:
            raise SpecError(f"{message.signature}: the patches build {role} as {shape}, the "
                            f"contract says {_shape(message)}")
    for line in skipped:
        log.warning("patches: skipped %s", line)
    return ResolvedSpec(
        generate=_core(commands, spec.generate),
        transfer=_core(commands, spec.transfer),
        cancel=_core(commands, spec.cancel),
        notify=_core(commands, spec.notify),
        numbers=tuple(numbers),
        concepts=concepts,
        tempo=tempo,
        replies=spec.replies,
        skipped=tuple(skipped),
        presets=presets,
        play=play,
        stop=stop,
        jam=jam,
        quantum=quantum,
        continue_=continue_,
        inpaint=inpaint,
        region_numbers=tuple(region_numbers),
        region_unit=spec.region.unit if spec.region is not None else "bars",
    )
