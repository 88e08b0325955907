"""The MIDI edge: MIDI input through the MIDI map into typed jobs and session changes.

Notes trigger presets (velocity may override parameters), note-offs cancel the job their note
queued, CCs move parameters (``tempo``, ``volume`` or a session default), program changes choose a
preset bank, MIDI clock drives the session tempo, and MIDI learn binds the next CC. Everything goes
to the :class:`~dreamsampler.server.service.Service`. Nothing here stops the server: a MIDI port
that is missing or vanishes is retried by :class:`~dreamsampler.server.midi_in.MidiInput`; an
unmapped note is counted; a refused action is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import mido
import yaml
from pydantic import ValidationError

from dreamsampler import schema
from dreamsampler.config import ConfigError, LiveConfig
from dreamsampler.engine.jobs import QueueFull
from dreamsampler.engine.request import RequestError
from dreamsampler.server.midi_in import VIRTUAL_PREFIX, MidiInput
from dreamsampler.server.midi_map import (
    PARAM_RANGES,
    Action,
    CancelNote,
    Learned,
    MidiMapper,
    SelectBank,
    SetParam,
    TriggerPreset,
)
from dreamsampler.server.preset_book import overrides_from
from dreamsampler.server.service import Service
from dreamsampler.server.sinks import SinkError

log = logging.getLogger(__name__)

MIDI_PARAM_FIELDS: dict[str, str] = {
    p.osc_key: p.name for p in schema.taken_by(schema.SESSION) if p.osc_key in PARAM_RANGES
}
"""MIDI-map parameter names (OSC keys) → request/session field names, from the schema
(``tempo`` and ``volume`` are live settings, not request fields)."""

LearnWaiter = Callable[[Learned | None, str], None]
"""Called once when MIDI learn binds (``Learned``, "") or is replaced (None, reason)."""


class MidiEdge:
    """MIDI input for one :class:`Service`.

    Args:
        service: where jobs and parameter changes go.
        config: the ``live`` section (MIDI ports, backend, map file, presets folder).

    Raises:
        ConfigError: the MIDI map file exists but is invalid.
    """

    def __init__(self, service: Service, config: LiveConfig) -> None:
        self.service = service
        self.config = config
        self.map_path = Path(config.midi_map or Path(config.presets_dir) / "midi_map.yaml")
        self.mapper = self._load_map()
        self.midi: MidiInput | None = None
        self.on_learned: list[Callable[[Learned], None]] = []
        self._learn_waiter: LearnWaiter | None = None
        self._note_jobs: dict[int, int] = {}

    def _load_map(self) -> MidiMapper:
        if not self.map_path.is_file():
            if self.config.midi_map is not None:
                log.warning("MIDI map %s does not exist yet; starting with an empty map (MIDI "
                            "learn writes it)", self.map_path)
            return MidiMapper()
        try:
            return MidiMapper.from_file(self.map_path)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                for e in exc.errors())
            raise ConfigError(f"MIDI map {self.map_path}: {problems}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"MIDI map {self.map_path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"MIDI map {self.map_path}: not valid YAML: {exc}") from None

    async def start(self) -> None:
        """Open the configured MIDI inputs (a missing port is retried later).

        Raises:
            ConfigError: the MIDI backend cannot be loaded.
        """
        if not self.config.midi_in:
            return
        midi = MidiInput(self.config.midi_in, self.handle_midi, self.config.midi_backend)
        try:
            await midi.start()
        except ImportError as exc:
            raise ConfigError(f"live.midi_backend {self.config.midi_backend!r}: {exc}") from None
        self.midi = midi

    async def close(self) -> None:
        if self.midi is not None:
            await self.midi.stop()
            self.midi = None

    # ---- messages -----------------------------------------------------------------------------

    def handle_midi(self, spec: str, msg: mido.Message) -> None:
        """Handle one MIDI message (on the loop thread): clock messages drive the tempo, the
        rest go through the MIDI map. Failures are logged, never raised."""
        if self.service.follow_midi_clock(msg):
            return
        for action in self.mapper.handle(msg):
            try:
                self.do(action)
            except (RequestError, SinkError, QueueFull, OSError, ValueError) as exc:
                log.warning("MIDI %s from %r: %s", action, spec, exc)

    def do(self, action: Action) -> None:
        """Carry out one MIDI-map action.

        Raises:
            RequestError, SinkError, QueueFull: the action was refused.
        """
        if isinstance(action, TriggerPreset):
            job = self.service.preset_job(action.name,
                                          overrides_from(action.overrides, MIDI_PARAM_FIELDS))
            submitted = self.service.submit(job)
            self._note_jobs[action.note] = submitted.job_id
        elif isinstance(action, CancelNote):
            job_id = self._note_jobs.pop(action.note, None)
            if job_id is not None and self.service.cancel(job_id):
                log.info("note %d released: job %d cancelled", action.note, job_id)
        elif isinstance(action, SetParam):
            self.set_param(action.name, action.value)
        elif isinstance(action, SelectBank):
            self.service.select_bank(action.name, action.index)
        elif isinstance(action, Learned):
            self._learned(action)

    def set_param(self, name: str, value: float | int) -> None:
        """Set a MIDI-map parameter (see :data:`PARAM_RANGES`): ``tempo`` (BPM), ``volume``
        (linear gain) or a session default.

        Raises:
            RequestError: unknown parameter, bad tempo or invalid session value.
        """
        if name == "tempo":
            self.service.set_tempo(float(value))
        elif name == "volume":
            self.service.set_volume(float(value))
        elif name in MIDI_PARAM_FIELDS:
            self.service.set_param(MIDI_PARAM_FIELDS[name], value)
        else:
            raise RequestError(f"unknown parameter {name!r}")

    # ---- learn and ports ----------------------------------------------------------------------

    def learn(self, param: str, waiter: LearnWaiter | None = None) -> None:
        """Arm MIDI learn for ``param``; ``waiter`` is called when the next CC binds it (or
        with None and a reason when another learn replaces this one).

        Raises:
            RequestError: unknown parameter, or no MIDI input configured.
        """
        if param not in PARAM_RANGES:
            raise RequestError(f"unknown parameter {param!r}; known: {', '.join(PARAM_RANGES)}")
        if not self.config.midi_in:
            raise RequestError("no MIDI input configured (start the server with --midi-in PORT)")
        previous, self._learn_waiter = self._learn_waiter, waiter
        self.mapper.learn(param)
        if previous is not None:
            previous(None, f"replaced by a MIDI learn of {param}")

    def _learned(self, action: Learned) -> None:
        try:
            self.mapper.save(self.map_path)
            log.info("MIDI learn: %s ← CC %d channel %d (saved in %s)", action.param,
                     action.cc, action.channel, self.map_path)
        except OSError as exc:
            log.error("MIDI learn: %s ← CC %d, but the map cannot be saved in %s: %s",
                      action.param, action.cc, self.map_path, exc)
        waiter, self._learn_waiter = self._learn_waiter, None
        for callback in [*([lambda a: waiter(a, "")] if waiter else []), *self.on_learned]:
            try:
                callback(action)
            except Exception:
                log.exception("MIDI learn callback failed")

    def port_states(self) -> list[str]:
        """What ``/midi.ports`` reports: one entry per configured MIDI input, in configuration
        order: the name of the port it is connected to, the spec itself for a virtual port
        (``virtual:NAME``), or ``"<spec> (missing)"`` while no port matches it."""
        connected = self.midi.open_ports if self.midi is not None else {}
        states = []
        for spec in self.config.midi_in:
            if spec not in connected:
                states.append(f"{spec} (missing)")
            elif spec.startswith(VIRTUAL_PREFIX):
                states.append(spec)
            else:
                states.append(connected[spec])
        return states

    @property
    def unmapped_notes(self) -> int:
        return self.mapper.unmapped_notes
