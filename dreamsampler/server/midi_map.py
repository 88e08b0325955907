"""MIDI mapping: notes trigger presets, CCs move session parameters, program changes pick banks.

The mapping is a YAML file validated with pydantic (see ``presets/midi_map.yaml``). MIDI
channels are written 1..16 in the file and in actions (mido itself counts 0..15). Note names use
the DAW convention given by ``middle_c_octave`` (default 3: ``C3`` = note 60, as in Ableton Live
and Yamaha; use 4 for scientific pitch, where ``C4`` = 60).

:class:`MidiMapper` is pure (no I/O except :meth:`MidiMapper.save`): ``handle(msg)`` turns one
``mido.Message`` into a list of :class:`Action` values for the server to execute.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import mido
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dreamsampler.fsutil import atomic_write_text


@dataclass(frozen=True)
class ParamRange:
    """Default range of a session parameter (``integer`` values are rounded)."""

    min: float
    max: float
    integer: bool = False
    curve: Literal["linear", "exp", "log", "step"] = "linear"
    unit: str = ""


PARAM_RANGES: dict[str, ParamRange] = {
    "strength": ParamRange(0.0, 1.0, unit="0..1 style-transfer strength"),
    "guidance": ParamRange(1.0, 12.0, unit="CFG scale"),
    "steps": ParamRange(4, 100, integer=True, unit="diffusion steps"),
    "seed": ParamRange(0, 127, integer=True, unit="seed"),
    "duration": ParamRange(1.0, 30.0, unit="seconds"),
    "bars": ParamRange(1, 16, integer=True, unit="bars"),
    "lora_scale": ParamRange(0.0, 1.5, unit="LoRA scale"),
    "tempo": ParamRange(60.0, 180.0, unit="BPM"),
    "volume": ParamRange(0.0, 1.0, unit="linear gain"),
}
"""Known session parameters with their default CC range (used by MIDI learn)."""

Curve = Literal["linear", "exp", "log", "step"]


def apply_curve(
    x: float, lo: float, hi: float, curve: Curve = "linear", steps: int | None = None,
    curvature: float = 3.0,
) -> float:
    """Map a normalized control position onto ``[lo, hi]``.

    Args:
        x: control position in 0..1 (CC value / 127, velocity / 127); clamped.
        lo: value at x = 0; ``hi``: value at x = 1 (``lo > hi`` reverses the direction).
        curve: ``linear``; ``exp`` (slow start, fast end: ``expm1(k x) / expm1(k)``);
            ``log`` (the inverse of ``exp``: fast start, slow end); ``step`` (``steps`` equal
            levels from ``lo`` to ``hi``).
        steps: number of levels for ``step`` (>= 2).
        curvature: ``k`` of the ``exp``/``log`` curves (> 0).

    Raises:
        ValueError: ``step`` without ``steps >= 2``, or ``curvature <= 0``.
    """
    x = min(1.0, max(0.0, float(x)))
    if curve == "linear":
        shaped = x
    elif curve in ("exp", "log"):
        if curvature <= 0:
            raise ValueError(f"curvature must be > 0, got {curvature}")
        if curve == "exp":
            shaped = math.expm1(curvature * x) / math.expm1(curvature)
        else:
            shaped = math.log1p(math.expm1(curvature) * x) / curvature
    elif curve == "step":
        if steps is None or steps < 2:
            raise ValueError("the 'step' curve needs steps >= 2")
        shaped = min(math.floor(x * steps), steps - 1) / (steps - 1)
    else:  # pragma: no cover - guarded by the Literal type / pydantic
        raise ValueError(f"unknown curve {curve!r}")
    return lo + (hi - lo) * shaped


def note_number(note: int | str, middle_c_octave: int = 3) -> int:
    """A MIDI note number from an int (0..127) or a name like ``C3``, ``F#2``, ``Eb-1``.

    Args:
        note: number or name; names are parsed with ``librosa.note_to_midi``.
        middle_c_octave: octave number of note 60 (3 = Ableton/Yamaha, 4 = scientific).

    Raises:
        ValueError: unparsable name or a result outside 0..127.
    """
    if isinstance(note, bool):
        raise ValueError("a note is a number 0..127 or a name like 'C3'")
    if isinstance(note, int):
        number = note
    else:
        import librosa  # lazy: heavy import, only needed for names

        try:
            number = int(librosa.note_to_midi(note.strip())) + 12 * (4 - middle_c_octave)
        except Exception as exc:  # librosa raises ParameterError
            raise ValueError(f"cannot parse note name {note!r}: {exc}") from exc
    if not 0 <= number <= 127:
        raise ValueError(f"note {note!r} is outside MIDI range 0..127 (got {number})")
    return number


class _Range(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min: float
    max: float
    curve: Curve = "linear"
    steps: int | None = Field(default=None, ge=2, le=128)
    curvature: float = Field(default=3.0, gt=0.0, le=20.0)

    @model_validator(mode="after")
    def _steps_for_step(self) -> _Range:
        if self.curve == "step" and self.steps is None:
            raise ValueError("curve 'step' needs 'steps'")
        return self

    def map(self, x: float, integer: bool = False) -> float | int:
        value = apply_curve(x, self.min, self.max, self.curve, self.steps, self.curvature)
        return round(value) if integer else value


def _check_param(name: str) -> str:
    if name not in PARAM_RANGES:
        raise ValueError(f"unknown parameter {name!r}; known: {', '.join(PARAM_RANGES)}")
    return name


class VelocityMap(_Range):
    """Velocity (1..127) → a generation parameter of the triggered preset."""

    param: str

    @field_validator("param")
    @classmethod
    def _known_param(cls, value: str) -> str:
        return _check_param(value)


class NoteMapping(BaseModel):
    """A note-on triggers ``preset``; note-off cancels the queued job if ``cancel_on_release``."""

    model_config = ConfigDict(extra="forbid")

    note: int | str
    channel: int | None = Field(default=None, ge=1, le=16)
    preset: str = Field(min_length=1)
    velocity: VelocityMap | None = None
    cancel_on_release: bool = False


class CCMapping(_Range):
    """A control change (``cc`` 0..127 on ``channel`` 1..16 or any) → session parameter."""

    cc: int = Field(ge=0, le=127)
    channel: int | None = Field(default=None, ge=1, le=16)
    param: str

    @field_validator("param")
    @classmethod
    def _known_param(cls, value: str) -> str:
        return _check_param(value)


class ProgramChangeMap(BaseModel):
    """Program change → bank: program N selects bank ``banks[N]`` (or bank index N)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    channel: int | None = Field(default=None, ge=1, le=16)
    banks: list[str] | None = None


class MidiMap(BaseModel):
    """The whole mapping file."""

    model_config = ConfigDict(extra="forbid")

    middle_c_octave: int = Field(default=3, ge=3, le=5)
    notes: list[NoteMapping] = Field(default_factory=list)
    ccs: list[CCMapping] = Field(default_factory=list)
    program_change: ProgramChangeMap = Field(default_factory=ProgramChangeMap)

    @model_validator(mode="after")
    def _notes_parse(self) -> MidiMap:
        for mapping in self.notes:
            note_number(mapping.note, self.middle_c_octave)  # raises ValueError if bad
        return self

    @classmethod
    def load(cls, path: str | Path) -> MidiMap:
        """Read and validate a mapping YAML file.

        Raises:
            OSError: unreadable file; ``yaml.YAMLError``: bad YAML;
            pydantic.ValidationError: unknown key or bad value (``loc`` gives the key path).
        """
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return cls.model_validate(data)


# ---- actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerPreset:
    """Start a generation with preset ``name``; ``overrides`` are (param, value) pairs."""

    name: str
    velocity: int
    note: int = -1
    overrides: tuple[tuple[str, float | int], ...] = ()


@dataclass(frozen=True)
class CancelNote:
    """The key of ``note`` was released: cancel the job it queued (if still queued)."""

    note: int


@dataclass(frozen=True)
class SetParam:
    """Set session parameter ``name`` to ``value`` (unit: see :data:`PARAM_RANGES`)."""

    name: str
    value: float | int


@dataclass(frozen=True)
class SelectBank:
    """Switch to bank ``index`` (program change number); ``name`` when the map names banks."""

    index: int
    name: str | None = None


@dataclass(frozen=True)
class Learned:
    """MIDI learn finished: ``param`` is now bound to ``cc`` on ``channel`` (1..16)."""

    param: str
    cc: int
    channel: int


Action = TriggerPreset | CancelNote | SetParam | SelectBank | Learned


class MidiMapper:
    """Turns MIDI messages into actions according to a :class:`MidiMap`.

    Thread-safe (a lock guards the tables): MIDI learn may be armed from the OSC thread while
    messages arrive on another. ``unmapped_notes`` counts note-ons that matched no mapping.
    """

    def __init__(self, midi_map: MidiMap | None = None) -> None:
        self._lock = threading.Lock()
        self.map = midi_map or MidiMap()
        self.unmapped_notes = 0
        self._learning: str | None = None
        self._rebuild()

    @classmethod
    def from_file(cls, path: str | Path) -> MidiMapper:
        """A mapper for the YAML mapping at ``path`` (errors as :meth:`MidiMap.load`)."""
        return cls(MidiMap.load(path))

    def _rebuild(self) -> None:
        octave = self.map.middle_c_octave
        self._notes = [(note_number(m.note, octave), m) for m in self.map.notes]

    @property
    def learning(self) -> str | None:
        """The parameter waiting for a CC (MIDI learn armed), or None."""
        return self._learning

    def learn(self, param: str) -> None:
        """Arm MIDI learn: the next control change received is bound to ``param``.

        The binding uses the default range and curve of :data:`PARAM_RANGES`. It replaces any
        previous binding of the same CC/channel.

        Raises:
            ValueError: unknown parameter name.
        """
        _check_param(param)
        with self._lock:
            self._learning = param

    def cancel_learn(self) -> None:
        """Disarm MIDI learn."""
        with self._lock:
            self._learning = None

    def handle(self, msg: mido.Message) -> list[Action]:
        """Actions for one MIDI message (empty for unmapped or irrelevant messages)."""
        with self._lock:
            channel = getattr(msg, "channel", 0) + 1
            if msg.type == "note_on" and msg.velocity > 0:
                return self._note_on(msg.note, msg.velocity, channel)
            if msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0):
                return [CancelNote(msg.note) for number, m in self._notes
                        if number == msg.note and m.cancel_on_release
                        and m.channel in (None, channel)][:1]
            if msg.type == "control_change":
                return self._control_change(msg.control, msg.value, channel)
            if msg.type == "program_change":
                pc = self.map.program_change
                if not pc.enabled or pc.channel not in (None, channel):
                    return []
                if pc.banks is None:
                    return [SelectBank(msg.program)]
                if msg.program < len(pc.banks):
                    return [SelectBank(msg.program, pc.banks[msg.program])]
            return []

    def _note_on(self, note: int, velocity: int, channel: int) -> list[Action]:
        for number, m in self._notes:
            if number == note and m.channel in (None, channel):
                overrides: tuple[tuple[str, float | int], ...] = ()
                if m.velocity is not None:
                    spec = PARAM_RANGES[m.velocity.param]
                    value = m.velocity.map(velocity / 127.0, spec.integer)
                    overrides = ((m.velocity.param, value),)
                return [TriggerPreset(m.preset, velocity, note, overrides)]
        self.unmapped_notes += 1
        return []

    def _control_change(self, cc: int, value: int, channel: int) -> list[Action]:
        actions: list[Action] = []
        if self._learning is not None:
            param = self._learning
            self._learning = None
            spec = PARAM_RANGES[param]
            mapping = CCMapping(cc=cc, channel=channel, param=param, min=spec.min, max=spec.max,
                                curve=spec.curve)
            self.map.ccs = [m for m in self.map.ccs
                            if not (m.cc == cc and m.channel in (None, channel))] + [mapping]
            actions.append(Learned(param, cc, channel))
        for m in self.map.ccs:
            if m.cc == cc and m.channel in (None, channel):
                actions.append(SetParam(m.param, m.map(value / 127.0,
                                                       PARAM_RANGES[m.param].integer)))
        return actions

    def save(self, path: str | Path) -> Path:
        """Write the current mapping (including learned CCs) as YAML, atomically, mode 0644."""
        with self._lock:
            data: dict[str, Any] = self.map.model_dump(mode="json", exclude_defaults=True)
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        return atomic_write_text(path, text)
