"""Presets and preset banks for live triggering (YAML files, validated with pydantic).

A preset describes one generation: prompt template, negative prompt, optional learned concept
(the prompt then holds the placeholder ``<concept-name>``), style-transfer strength, seed policy,
diffusion steps, classifier-free guidance scale, clip length (``bars`` *or* ``seconds``), an
optional input clip for style transfer, where the result goes (``sinks``) and the LoRA scale.

Layout of a presets folder (``load_presets``):

* ``DIR/name.yaml`` holding a mapping: one preset, bank ``default``;
* ``DIR/bankname.yaml`` holding a list of mappings: the bank ``bankname``;
* ``DIR/bankname/*.yaml``: every preset in the sub-folder belongs to the bank ``bankname``.

A file with an error (bad YAML, unknown key, value out of range, duplicate name) is refused as a
whole and reported with its path and the pydantic key path; the other files still load.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)

from dreamsampler import schema
from dreamsampler.fsutil import atomic_write_text

SEED_MAX = schema.SEED_MAX
"""Largest seed handed out (seeds are 31-bit non-negative ints, safe for every RNG)."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,63}$"
"""Allowed preset/bank names: they become file names, so no path separators."""

_PLACEHOLDER = re.compile(r"<([A-Za-z0-9][A-Za-z0-9_.-]*)>")

Sink = Literal["folder", "device"]


class SeedPolicy(BaseModel):
    """How the seed of the next generation is chosen.

    YAML forms: ``seed: 1234`` (fixed), ``seed: random``, ``seed: increment`` (start at 0) or
    ``seed: {mode: increment, value: 100}`` (start at 100).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["fixed", "random", "increment"]
    value: int | None = Field(default=None, ge=0, le=SEED_MAX)

    @model_validator(mode="before")
    @classmethod
    def _from_short_form(cls, data: Any) -> Any:
        if isinstance(data, bool):
            raise ValueError("seed must be an int, 'random', 'increment' or a mapping")
        if isinstance(data, int):
            return {"mode": "fixed", "value": data}
        if isinstance(data, str):
            return {"mode": data}
        return data

    @model_validator(mode="after")
    def _fixed_needs_value(self) -> SeedPolicy:
        if self.mode == "fixed" and self.value is None:
            raise ValueError("a fixed seed policy needs a value")
        return self

    @model_serializer
    def _to_short_form(self) -> int | str | dict[str, Any]:
        if self.mode == "fixed":
            return int(self.value or 0)
        if self.value is None:
            return self.mode
        return {"mode": self.mode, "value": self.value}

    def next_seed(self, previous: int | None = None, rng: random.Random | None = None) -> int:
        """The seed for the next generation.

        Args:
            previous: the seed used last time with this preset, if any.
            rng: random source for the ``random`` mode (default: the module's shared RNG).

        Returns:
            ``fixed``: the fixed value; ``random``: a uniform int in [0, 2**31 - 1];
            ``increment``: ``previous + 1`` (wrapping at 2**31), or the start value (default 0)
            when there is no previous seed.
        """
        if self.mode == "fixed":
            return int(self.value or 0)
        if self.mode == "random":
            return (rng or random).randint(0, SEED_MAX)
        if previous is None:
            return int(self.value or 0)
        return (previous + 1) % (SEED_MAX + 1)


class PresetRules(BaseModel):
    """The preset's own keys and checks; :func:`preset_model` adds a key per schema parameter
    taken by presets (:data:`~dreamsampler.schema.PRESET`).

    Its own keys: ``name``, ``prompt``, ``concept`` (a placeholder name), ``seed`` (a
    :class:`SeedPolicy`), ``input_clip`` (a path), ``sinks`` and ``bank``. Schema keys are named
    by :attr:`~dreamsampler.schema.Param.preset_key` (``steps``, ``guidance``,
    ``negative_prompt``, ``seconds``…), with the schema's type and range; one the preset omits
    takes :attr:`~dreamsampler.schema.Param.preset_default`, or the session's value when that is
    None.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    prompt: str = Field(min_length=1)
    concept: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: SeedPolicy = Field(default_factory=lambda: SeedPolicy(mode="random"))
    input_clip: Path | None = None
    sinks: list[Sink] = Field(default_factory=lambda: ["folder"], min_length=1)
    bank: str | None = Field(default=None, pattern=NAME_PATTERN)

    # issue 18: the schema's key and meter (see preset_model) are parsed and normalised
    @field_validator("key", check_fields=False)
    @classmethod
    def _check_key(cls, key: str | None) -> str | None:
        from dreamsampler.engine.conform import parse_key

        return None if key is None else parse_key(key).label  # ConformError is a ValueError

    @field_validator("meter", check_fields=False)
    @classmethod
    def _check_meter(cls, meter: str | None) -> str | None:
        from dreamsampler.engine.conform import parse_meter

        return None if meter is None else "{}/{}".format(*parse_meter(meter))

    @field_validator("sinks")
    @classmethod
    def _unique_sinks(cls, sinks: list[Sink]) -> list[Sink]:
        if len(set(sinks)) != len(sinks):
            raise ValueError("sinks are listed twice")
        return sinks

    @model_validator(mode="after")
    def _check(self) -> Any:
        bars, seconds = getattr(self, "bars", None), getattr(self, "seconds", None)
        if (bars is None) == (seconds is None):
            raise ValueError("give exactly one of 'bars' or 'seconds'")
        if bars == 0:
            raise ValueError("bars must be >= 1 (or give seconds)")
        found = set(_PLACEHOLDER.findall(self.prompt)) | set(
            _PLACEHOLDER.findall(getattr(self, "negative_prompt", None) or "")
        )
        allowed = {self.concept} if self.concept else set()
        if found - allowed:
            raise ValueError(
                f"prompt placeholder(s) {sorted(found - allowed)} do not match concept "
                f"{self.concept!r}"
            )
        if self.concept and self.concept not in _PLACEHOLDER.findall(self.prompt):
            raise ValueError(f"concept {self.concept!r} is set but the prompt lacks "
                             f"'<{self.concept}>'")
        return self

    def duration_seconds(self, bpm: float, beats_per_bar: int = 4) -> float:
        """Clip length in seconds at ``bpm`` (BPM) for ``bars`` presets, else ``seconds``."""
        bars, seconds = getattr(self, "bars", None), getattr(self, "seconds", None)
        if bars is not None:
            return float(bars * beats_per_bar * 60.0 / bpm)
        assert seconds is not None
        return float(seconds)

    def to_yaml(self) -> str:
        """The preset as a YAML mapping (defaults and the loader-set ``bank`` left out)."""
        data = self.model_dump(mode="json", exclude_none=True, exclude={"bank"})
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


OWN_KEYS = frozenset({"prompt", "concept", "seed", "input_path"})
"""Schema parameters whose preset key :class:`PresetRules` declares itself."""


def preset_model(params: Sequence[schema.Param] | None = None) -> type[PresetRules]:
    """The ``Preset`` model for ``params`` (default: the schema's)."""
    fields: dict[str, Any] = {}
    for p in schema.taken_by(schema.PRESET, params):
        if p.name in OWN_KEYS:
            continue
        kind: Any = Literal[p.choices] if p.choices else p.python_type()
        if p.preset_default is None:
            kind = kind | None
        fields[p.yaml_key] = (kind, Field(p.preset_default, ge=p.minimum, le=p.maximum,
                                          description=p.description))
    model = create_model("Preset", __base__=PresetRules, __module__=__name__, **fields)
    model.__doc__ = PRESET_DOC
    return model


PRESET_DOC = """One playable preset (see :class:`PresetRules` for its keys).

Units: ``strength`` 0..1 (style-transfer denoising strength, 1 = ignore the input clip),
``steps`` diffusion steps, ``guidance`` CFG scale, ``bars`` whole bars at the session tempo,
``seconds`` seconds, ``lora_scale`` -2..2 (the schema's range; it was 0..2 before 0.3),
``stems`` 1: also separate the clip into stems with Demucs in the same job (issue 19).

Raises:
    pydantic.ValidationError: unknown key, value out of range, both or neither of
        ``bars``/``seconds``, a ``<placeholder>`` in the prompt that is not ``<concept>``,
        or a concept that does not appear in the prompt.
"""
Preset = preset_model()


@dataclass(frozen=True)
class PresetError:
    """A refused preset file: ``path``, the pydantic key path ``loc`` and the message."""

    path: Path
    loc: tuple[str | int, ...]
    message: str

    def __str__(self) -> str:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.loc)
        return f"{self.path}: {where.lstrip('.') or '<file>'}: {self.message}"


@dataclass(frozen=True)
class Bank:
    """A named group of presets (file or folder); ``presets`` holds names in file order."""

    name: str
    presets: tuple[str, ...]


@dataclass
class PresetLibrary(Mapping[str, Preset]):
    """All loaded presets by name, plus their banks sorted by bank name (program change index)."""

    presets: dict[str, Preset] = field(default_factory=dict)
    banks: list[Bank] = field(default_factory=list)

    def __getitem__(self, name: str) -> Preset:
        return self.presets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.presets)

    def __len__(self) -> int:
        return len(self.presets)

    def bank(self, index: int) -> Bank:
        """The bank at ``index`` (program change number). Raises IndexError if out of range."""
        return self.banks[index]


def _errors_from_validation(path: Path, exc: ValidationError, prefix: tuple[int, ...] = ()
                            ) -> list[PresetError]:
    return [PresetError(path, prefix + tuple(e["loc"]), e["msg"]) for e in exc.errors()]


def _parse_file(path: Path, bank: str) -> tuple[list[Preset], list[PresetError]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return [], [PresetError(path, (), f"cannot read YAML: {exc}")]
    items: list[Any]
    if isinstance(data, list):
        items = data
        bank = path.stem if bank == "default" else bank
    elif isinstance(data, dict):
        items = [data]
    else:
        return [], [PresetError(path, (), "expected a preset mapping or a list of presets")]
    presets: list[Preset] = []
    errors: list[PresetError] = []
    for i, item in enumerate(items):
        prefix = (i,) if isinstance(data, list) else ()
        try:
            preset = Preset.model_validate(item)
        except ValidationError as exc:
            errors.extend(_errors_from_validation(path, exc, prefix))
            continue
        if preset.bank is None:
            preset = preset.model_copy(update={"bank": bank})
        presets.append(preset)
    if errors:  # a file is refused as a whole
        return [], errors
    return presets, []


def load_presets(
    directory: str | Path, exclude: Collection[str] = ("midi_map.yaml",)
) -> tuple[PresetLibrary, list[PresetError]]:
    """Load every ``*.yaml``/``*.yml`` preset file under ``directory`` (one level of bank folders).

    Args:
        directory: the presets folder.
        exclude: file names to skip (the MIDI map lives in the same folder).

    Returns:
        ``(library, errors)``: the presets of all valid files, and one :class:`PresetError` per
        problem in refused files (a file with any error contributes no preset; a preset whose
        name was already loaded is refused with ``loc=('name',)``).

    Raises:
        NotADirectoryError: ``directory`` is not a folder.
    """
    root = Path(directory)
    if not root.is_dir():
        raise NotADirectoryError(f"presets folder not found: {root}")
    files: list[tuple[Path, str]] = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            files.extend((f, entry.name) for f in sorted(entry.iterdir()) if _is_yaml(f, exclude))
        elif _is_yaml(entry, exclude):
            files.append((entry, "default"))
    library = PresetLibrary()
    errors: list[PresetError] = []
    bank_members: dict[str, list[str]] = {}
    for path, bank in files:
        presets, file_errors = _parse_file(path, bank)
        errors.extend(file_errors)
        for preset in presets:
            if preset.name in library.presets:
                errors.append(PresetError(path, ("name",), f"duplicate preset name "
                                          f"{preset.name!r} (already loaded)"))
                continue
            library.presets[preset.name] = preset
            bank_members.setdefault(preset.bank or "default", []).append(preset.name)
    library.banks = [Bank(name, tuple(names)) for name, names in sorted(bank_members.items())]
    return library, errors


def _is_yaml(path: Path, exclude: Collection[str]) -> bool:
    return (path.is_file() and path.suffix in (".yaml", ".yml") and path.name not in exclude
            and not path.name.startswith("."))


def save_preset(directory: str | Path, preset: Preset, bank: str | None = None) -> Path:
    """Write ``preset`` as ``DIR/<name>.yaml`` (or ``DIR/<bank>/<name>.yaml``) atomically.

    The file is written to a temp file in the same folder, fsync'ed, moved with ``os.replace``
    and made 0644. An existing file of that name is replaced.

    Returns:
        The path written.

    Raises:
        ValueError: ``bank`` is not a valid name.
        OSError: the folder cannot be created or written.
    """
    folder = Path(directory)
    if bank is not None:
        if not re.match(NAME_PATTERN, bank):
            raise ValueError(f"invalid bank name {bank!r}")
        folder = folder / bank
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(folder / f"{preset.name}.yaml", preset.to_yaml())
