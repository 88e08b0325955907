"""The loaded presets as job templates: a preset (plus MIDI overrides) becomes generation
parameters and delivery settings; the session can be saved as a preset; banks are selected by
MIDI program change and cycled by jam mode.

The file format and loading live in :mod:`dreamsampler.server.presets`; this module keeps the
library, the last seed per preset (seed policies ``increment``/``random``) and the chosen bank.
"""

from __future__ import annotations

import asyncio
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
    Bank,
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


MAX_PRESETS = 1000
"""Presets ``/preset/save`` may bring the library to (``limits.max_presets``)."""
PAGE_SIZE = 64
"""Names per ``/preset/list <page>`` reply (64 names of at most 64 characters: < 5 KB)."""


class PresetBook:
    """The presets of one folder.

    Args:
        presets_dir: the presets folder (missing: no presets, logged).
        load: load it now (False: start empty, e.g. for one clip from the command line).
        max_presets: ``/preset/save`` of a new name fails once the library holds this many.
    """

    def __init__(self, presets_dir: Path, load: bool = True,
                 max_presets: int = MAX_PRESETS) -> None:
        self.presets_dir = Path(presets_dir)
        self.max_presets = max_presets
        self._saving: asyncio.Lock | None = None
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

    def page(self, index: int, size: int = PAGE_SIZE) -> tuple[list[str], int]:
        """Page ``index`` (from 0) of :meth:`names` and the number of pages (at least 1)."""
        names = self.names()
        pages = max(1, -(-len(names) // size))
        return names[index * size:(index + 1) * size], pages

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
        """Save the session parameters as preset ``name`` (``DIR/<name>.yaml``, atomic) and add
        it to the library (no reload of the other files).

        Raises:
            PresetRequestError: see :meth:`preset_from_session`; or the folder cannot be written.
        """
        preset = self.preset_from_session(name, session)
        path = self._write(preset)
        self._add(preset)
        return path

    async def save(self, preset: Preset) -> Path:
        """Write ``preset`` (from :meth:`preset_from_session`) off the event loop and add it to
        the library (``/preset/save``); saves run one at a time, in order.

        Raises:
            PresetRequestError: ``max_presets`` reached, or the folder cannot be written.
        """
        if self._saving is None:
            self._saving = asyncio.Lock()
        async with self._saving:
            self._check_room(preset.name)
            path = await asyncio.to_thread(self._write, preset)
            self._add(preset)
        return path

    def _check_room(self, name: str) -> None:
        if name not in self.library and len(self.library) >= self.max_presets:
            raise PresetRequestError(
                f"cannot save preset {name!r}: {len(self.library)} presets loaded, the most "
                f"allowed (limits.max_presets {self.max_presets}); replace or delete one")

    def _write(self, preset: Preset) -> Path:
        try:
            return save_preset(self.presets_dir, preset)
        except OSError as exc:
            raise PresetRequestError(f"cannot save preset {preset.name!r} in "
                                     f"{self.presets_dir}: {exc.strerror or exc}") from None

    def _add(self, preset: Preset) -> None:
        """Put a just-saved preset of bank ``default`` into the library (incremental)."""
        library = self.library
        if preset.bank is None:  # as load_presets assigns it
            preset = preset.model_copy(update={"bank": "default"})
        library.presets[preset.name] = preset
        banks = {b.name: b for b in library.banks}
        members = banks.get("default", Bank("default", ())).presets
        if preset.name not in members:
            banks["default"] = Bank("default", (*members, preset.name))
            library.banks = [banks[k] for k in sorted(banks)]

    def preset_from_session(self, name: str, session: Any) -> Preset:
        """The preset ``name`` holding the session parameters (validated, not written).
        Every session field a preset takes is kept (concept, scheduler, ...;
        :data:`~dreamsampler.schema.PRESET`); the seed is kept when the session seed is locked,
        else the preset draws a random one.

        Raises:
            PresetRequestError: no prompt in the session, an invalid name or value, a preset of
                that name in a bank file, or ``max_presets`` reached.
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
        self._check_room(preset.name)
        return preset


def overrides_from(pairs: Sequence[tuple[str, float | int]], fields: dict[str, str]
                   ) -> GenerationParams:
    """``GenerationParams`` from ``(name, value)`` pairs, names mapped through ``fields``."""
    values = {fields[name]: value for name, value in pairs if name in fields}
    return GenerationParams(**values)
