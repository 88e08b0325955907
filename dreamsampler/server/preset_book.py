"""The loaded presets as job templates: a preset (plus MIDI overrides) becomes generation
parameters and delivery settings; the session can be saved as a preset; banks are selected by
MIDI program change and cycled by jam mode.

The file format and loading live in :mod:`dreamsampler.server.presets`; this module keeps the
library, the last seed per preset (seed policies ``increment``/``random``) and the chosen bank.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dreamsampler import schema
from dreamsampler.engine.request import RequestError
from dreamsampler.server.delivery import FOLDER, GenerationParams
from dreamsampler.server.presets import (
    OWN_KEYS,
    Preset,
    PresetError,
    PresetLibrary,
    load_presets,
    save_preset,
)

log = logging.getLogger(__name__)


class PresetRequestError(RequestError):
    """A preset command cannot be carried out; the message says why (sent with ``/fail``)."""


@dataclass(frozen=True)
class PresetJob:
    """What one trigger of a preset asks for: parameters, file name, sinks and sidecar fields."""

    preset: str
    params: GenerationParams
    transfer: bool
    name: str
    sinks: tuple[str, ...]
    extra: dict[str, Any]


class PresetBook:
    """The presets of one folder.

    Args:
        presets_dir: the presets folder (missing: no presets, logged).
        load: load it now (False: start empty, e.g. for one clip from the command line).
    """

    def __init__(self, presets_dir: Path, load: bool = True) -> None:
        self.presets_dir = Path(presets_dir)
        self.library = PresetLibrary()
        self.errors: list[PresetError] = []
        self.bank: str | None = None
        """Bank chosen by MIDI program change (jam mode cycles through it)."""
        self._last_seed: dict[str, int] = {}
        if load:
            self.reload()

    def __len__(self) -> int:
        return len(self.library)

    def reload(self) -> None:
        """(Re)load the presets folder; refused files are logged with file and key."""
        if not self.presets_dir.is_dir():
            log.warning("presets folder %s not found: no presets loaded", self.presets_dir)
            self.library, self.errors = PresetLibrary(), []
            return
        self.library, self.errors = load_presets(self.presets_dir)
        for error in self.errors:
            log.warning("preset refused: %s", error)
        log.info("%d presets loaded from %s", len(self.library), self.presets_dir)

    def names(self) -> list[str]:
        """Loaded preset names, bank by bank (banks sorted by name, presets in file order)."""
        return [name for bank in self.library.banks for name in bank.presets]

    def get(self, name: str) -> Preset:
        """The preset called ``name``.

        Raises:
            PresetRequestError: no such preset (the message lists what is loaded).
        """
        try:
            return self.library[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise PresetRequestError(f"unknown preset {name!r} (loaded: {known})") from None

    def bank_presets(self) -> list[str]:
        """The presets of the chosen bank (empty when none is chosen)."""
        if self.bank is None:
            return []
        bank = next((b for b in self.library.banks if b.name == self.bank), None)
        return list(bank.presets) if bank else []

    def select_bank(self, name: str | None, index: int) -> None:
        """Choose a bank by name, else by its index in the sorted banks (logged when absent)."""
        if name is not None:
            self.bank = name
        else:
            try:
                self.bank = self.library.bank(index).name
            except IndexError:
                log.warning("program change %d: no bank %d (%d loaded)", index, index,
                            len(self.library.banks))
                return
        log.info("bank %s selected", self.bank)

    def job(self, name: str, overrides: GenerationParams | None = None) -> PresetJob:
        """Parameters for one generation from preset ``name``; ``overrides`` (set fields) win.

        The seed follows the preset's seed policy; it is remembered once the job is accepted
        (:meth:`accepted`).

        Raises:
            PresetRequestError: unknown preset.
        """
        preset = self.get(name)
        seed = preset.seed.next_seed(self._last_seed.get(preset.name))
        transfer = preset.input_clip is not None
        values = {p.name: getattr(preset, p.yaml_key) for p in schema.taken_by(schema.PRESET)
                  if p.name not in OWN_KEYS}
        bars = values.get("bars")
        values.update(
            prompt=preset.prompt, seed=seed, concept=preset.concept or None,
            duration=None if bars is not None else values.get("duration"),
            input_path=str(preset.input_clip) if transfer else None,
            strength=values.get("strength") if transfer else None,
        )
        params = GenerationParams(**values)
        if overrides is not None:
            params = replace(params, **{k: v for k, v in vars(overrides).items()
                                        if v is not None})
        return PresetJob(preset.name, params, transfer,
                         f"{time.strftime('%Y%m%d-%H%M%S')}_{preset.name}_{params.seed}",
                         (FOLDER, *(s for s in preset.sinks if s != FOLDER)),  # folder: always
                         {"preset": preset.name})

    def accepted(self, job: PresetJob) -> None:
        """Remember the seed of an accepted job (the next one follows the seed policy)."""
        if job.params.seed is not None:
            self._last_seed[job.preset] = int(job.params.seed)

    def save_session(self, name: str, session: Any) -> Path:
        """Save the session parameters as preset ``name`` (``DIR/<name>.yaml``, atomic) and
        reload the presets. Every session field a preset takes is kept (concept, scheduler,
        ...; :data:`~dreamsampler.schema.PRESET`); the seed is kept when the session seed is
        locked, else the preset draws a random one.

        Raises:
            PresetRequestError: no prompt in the session, an invalid name or value, a preset of
                that name in a bank file, or the folder cannot be written.
        """
        s = session
        if not s.prompt.strip():
            raise PresetRequestError("the session has no prompt to save (set /param/prompt)")
        existing = self.library.get(name)
        if existing is not None and existing.bank != "default":
            raise PresetRequestError(f"preset {name!r} belongs to bank {existing.bank!r}; "
                                     "choose another name")
        data: dict[str, Any] = {"name": name}
        for p in schema.taken_by(schema.PRESET):
            value = getattr(s, p.name, None)
            if value is not None and value != "":
                data[p.yaml_key] = value
        # a locked session seed is kept; an unlocked session draws a fresh one each time
        data["seed"] = s.seed if getattr(s, "seed_lock", 0) and s.seed >= 0 else "random"
        if s.bars:
            data.pop("seconds", None)
        else:
            data.pop("bars", None)
        if not s.input_path:
            data.pop("strength", None)
        try:
            preset = Preset.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "preset"
            raise PresetRequestError(f"cannot save preset {name!r}: {where}: {first['msg']}"
                                     ) from None
        try:
            path = save_preset(self.presets_dir, preset)
        except OSError as exc:
            raise PresetRequestError(f"cannot save preset {name!r} in {self.presets_dir}: "
                                     f"{exc.strerror or exc}") from None
        self.reload()
        return path


def overrides_from(pairs: Sequence[tuple[str, float | int]], fields: dict[str, str]
                   ) -> GenerationParams:
    """``GenerationParams`` from ``(name, value)`` pairs, names mapped through ``fields``."""
    values = {fields[name]: value for name, value in pairs if name in fields}
    return GenerationParams(**values)
