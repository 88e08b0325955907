"""The OSC commands as typed request objects (as supriya does), decoded through the contract.

:func:`decode` looks the address up EXACTLY in :data:`~dreamsampler.server.contract.COMMANDS`
(OSC address patterns are refused: matching ``/*****…!`` with a regex can backtrack for minutes),
parses the atoms with the contract entry and returns one frozen dataclass per command. Field names
are the contract's argument targets (request field names), so an edge reads ``gen.seed`` instead
of ``values["seed"]``; ``None`` means "not sent" (the session default applies).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from dreamsampler.server.contract import COMMANDS, PARAMS, ContractError
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


@dataclass(frozen=True)
class _Generate(Request):
    """Fields shared by ``/gen`` and ``/transfer``: the generation options."""

    prompt: str = ""
    negative_prompt: str | None = None
    seed: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    duration: float | None = None
    scheduler: str | None = None
    concept: str | None = None
    lora_scale: float | None = None
    bars: int | None = None
    job_id: int | None = None
    name: str | None = None
    loras: tuple[tuple[str, float], ...] | None = None
    count: int | None = None  # issue 21: takes

    def params(self) -> GenerationParams:
        """The generation parameters this message sets (unset ones stay None)."""
        names = {f.name for f in fields(GenerationParams)}
        return GenerationParams(**{f.name: getattr(self, f.name) for f in fields(self)
                                   if f.name in names})


@dataclass(frozen=True)
class Gen(_Generate):
    address = "/gen"


@dataclass(frozen=True)
class Transfer(_Generate):
    address = "/transfer"
    input_path: str = ""
    strength: float | None = None


@dataclass(frozen=True)
class Continue(_Generate):
    """``/continue input amount [prompt]``: ``amount`` of new audio after the input, in
    ``unit``."""

    address = "/continue"
    prompt: str | None = None  # type: ignore[assignment]  # default: the session prompt
    input_path: str = ""
    amount: float = 0.0
    unit: str | None = None

    def params(self) -> GenerationParams:
        return dataclasses.replace(super().params(), continuation=self.amount)


@dataclass(frozen=True)
class Inpaint(_Generate):
    """``/inpaint input start end [prompt]``: repaint ``[start, end)`` of the input, in
    ``unit``."""

    address = "/inpaint"
    prompt: str | None = None  # type: ignore[assignment]  # default: the session prompt
    input_path: str = ""
    start: float = 0.0
    end: float = 0.0
    unit: str | None = None

    def params(self) -> GenerationParams:
        return dataclasses.replace(super().params(), mask_start=self.start, mask_end=self.end)


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
    for t in (Gen, Transfer, Continue, Inpaint, Trigger, ConceptLoad, ConceptUnload, ConceptList,
              ConceptAvailable, Cancel, Notify, Status, Sync, Version, PresetTrigger, PresetList,
              PresetSave, MidiLearn, MidiPorts, AudioDevices, Tempo, Play, Stop, Jam)
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
