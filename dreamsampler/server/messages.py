"""The OSC commands as typed request objects (as supriya does), decoded through the contract.

:func:`decode` looks the address up EXACTLY in :data:`~dreamsampler.server.contract.COMMANDS`
(OSC address patterns are refused: matching ``/*****…!`` with a regex can backtrack for minutes),
parses the atoms with the contract entry and returns one frozen dataclass per command. Field names
are the contract's argument targets (request field names), so an edge reads ``gen.seed`` instead
of ``values["seed"]``; ``None`` means "not sent" (the session default applies). The generation
commands' types are made from the contract, which takes its options from
:mod:`dreamsampler.schema`: a new option needs no edit here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from dreamsampler.server.contract import COMMANDS, PARAMS, ContractError, Message
from dreamsampler.server.delivery import GenerationParams

PATTERN_CHARACTERS = frozenset("*?[]{}")
"""Characters that make an OSC address a pattern (OSC 1.0 address pattern matching)."""


class PatternAddressError(ContractError):
    """An address holding OSC pattern characters (``*?[]{}``): not supported."""


@dataclass(frozen=True)
class Request:
    """A decoded OSC command (subclasses: one per contract address)."""

    address: ClassVar[str]

    @classmethod
    def from_values(cls, address: str, values: dict[str, Any]) -> Request:
        """The request from contract-parsed ``values`` (``{arg.target: value}``)."""
        return cls(**values)

    @property
    def replies(self) -> tuple[str, ...]:
        """The reply patterns this request is answered with (its contract entry's, as
        supriya's requests carry theirs), e.g. ``("/queued i:job_id i:position", ...)``."""
        address = f"/param/{self.name}" if isinstance(self, Param) else self.address
        return COMMANDS[address].replies


@dataclass(frozen=True)
class Generate(Request):
    """A generation command (``/gen``, ``/transfer``, ``/continue``, ``/inpaint``). Its fields
    are made from the contract entry (:func:`generate_type`): one per positional argument and
    option, named by request field, ``None`` when not sent."""

    def params(self) -> GenerationParams:
        """The generation parameters this message sets (unset ones stay None)."""
        names = {f.name for f in fields(GenerationParams)}
        return GenerationParams(**{f.name: getattr(self, f.name) for f in fields(self)
                                   if f.name in names})


def generate_type(name: str, command: Message) -> type[Generate]:
    """The frozen dataclass of a generation command: a field per argument and option target
    (all optional: ``None`` = not sent)."""
    targets = [a.target for a in (*command.args, *command.options)]
    made = dataclasses.make_dataclass(
        name, [(t, Any, dataclasses.field(default=None)) for t in dict.fromkeys(targets)],
        bases=(Generate,), frozen=True, namespace={"address": command.address})
    made.__module__ = __name__
    return made


Gen = generate_type("Gen", COMMANDS["/gen"])
Transfer = generate_type("Transfer", COMMANDS["/transfer"])
Continue = generate_type("Continue", COMMANDS["/continue"])
"""``/continue input amount [prompt]``: ``continuation`` (the amount) of new audio after the
input, in ``unit``."""
Inpaint = generate_type("Inpaint", COMMANDS["/inpaint"])
"""``/inpaint input start end [prompt]``: repaint ``[mask_start, mask_end)`` of the input, in
``unit``."""
Conform = generate_type("Conform", COMMANDS["/conform"])
"""``/conform input [bpm] [key] [bars] [meter]``: a no-model job (issue 18): conform the input
to ``bpm``, ``key`` and ``bars``."""


@dataclass(frozen=True)
class Separate(Request):
    """``/separate input [model M] [id N] [name S]`` (issue 19): split a clip into stems
    (``model`` is the ``stems_model`` field)."""

    address = "/separate"
    input_path: str = ""
    stems_model: str | None = None
    job_id: int | None = None
    name: str | None = None


@dataclass(frozen=True)
class Trigger(Request):
    address = "/trigger"


@dataclass(frozen=True)
class Param(Request):
    """``/param/<name>``: ``field`` is the session field it sets."""

    address = "/param"
    name: str
    field: str
    value: Any

    @classmethod
    def from_values(cls, address: str, values: dict[str, Any]) -> Request:
        arg = PARAMS[address.removeprefix("/param/")]
        return cls(arg.name, arg.target, values.get(arg.target, ""))


@dataclass(frozen=True)
class ConceptLoad(Request):
    address = "/concept/load"
    name: str


@dataclass(frozen=True)
class ConceptUnload(Request):
    address = "/concept/unload"
    name: str


@dataclass(frozen=True)
class ConceptList(Request):
    address = "/concept/list"


@dataclass(frozen=True)
class ConceptAvailable(Request):
    address = "/concept/available"


@dataclass(frozen=True)
class Cancel(Request):
    address = "/cancel"
    job_id: int


@dataclass(frozen=True)
class Notify(Request):
    address = "/notify"
    on: int
    reply_port: int | None = None


@dataclass(frozen=True)
class Status(Request):
    address = "/status"


@dataclass(frozen=True)
class Sync(Request):
    address = "/sync"
    id: int


@dataclass(frozen=True)
class Version(Request):
    address = "/version"


@dataclass(frozen=True)
class PresetTrigger(Request):
    address = "/preset/trigger"
    name: str


@dataclass(frozen=True)
class PresetList(Request):
    address = "/preset/list"


@dataclass(frozen=True)
class PresetSave(Request):
    address = "/preset/save"
    name: str


@dataclass(frozen=True)
class MidiLearn(Request):
    address = "/midi/learn"
    param: str


@dataclass(frozen=True)
class MidiPorts(Request):
    address = "/midi/ports"


@dataclass(frozen=True)
class AudioDevices(Request):
    address = "/audio/devices"


@dataclass(frozen=True)
class Tempo(Request):
    address = "/tempo"
    bpm: float


@dataclass(frozen=True)
class Play(Request):
    address = "/play"
    job_id: int
    quantum: float | None = None


@dataclass(frozen=True)
class Stop(Request):
    address = "/stop"


@dataclass(frozen=True)
class Jam(Request):
    """``/jam on|off [presets]``: ``presets`` split at commas."""

    address = "/jam"
    on: bool
    presets: tuple[str, ...] = ()

    @classmethod
    def from_values(cls, address: str, values: dict[str, Any]) -> Request:
        state = values["state"].strip().lower()
        if state not in ("on", "off"):
            raise ContractError(f"state must be 'on' or 'off', got {values['state']!r}")
        names = tuple(n.strip() for n in values.get("presets", "").split(",") if n.strip())
        if state == "off" and names:
            raise ContractError("/jam off takes no preset names")
        return cls(state == "on", names)


TYPES: dict[str, type[Request]] = {
    t.address: t
    for t in (Gen, Transfer, Continue, Inpaint, Conform, Trigger, ConceptLoad, ConceptUnload,
              ConceptList, ConceptAvailable, Cancel, Notify, Status, Sync, Version, PresetTrigger,
              PresetList, PresetSave, MidiLearn, MidiPorts, AudioDevices, Tempo, Play, Stop, Jam,
              Separate)
}
TYPES.update({f"/param/{name}": Param for name in PARAMS})


def is_pattern(address: str) -> bool:
    """True when ``address`` holds OSC pattern characters (``*?[]{}``)."""
    return not PATTERN_CHARACTERS.isdisjoint(address)


def decode(address: str, atoms: tuple[Any, ...] | list[Any]) -> Request:
    """The typed request for one received message.

    Raises:
        PatternAddressError: the address is an OSC pattern.
        KeyError: no command has this address.
        ContractError: the atoms do not match the command (missing, wrong type, out of range).
    """
    if is_pattern(address):
        raise PatternAddressError("pattern addresses are not supported")
    command = COMMANDS[address]
    return TYPES[address].from_values(address, command.parse(atoms))
