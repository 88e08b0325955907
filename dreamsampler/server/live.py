"""Live performance: presets, MIDI control, tempo, audio-device playback and jam mode.

:class:`Live` sits between the edges (OSC handlers, MIDI input) and the :class:`Service`. It turns
presets and MIDI actions into ordinary request values for :meth:`Service.submit` (one queue, one
sampling loop, the folder sink always gets the clip), follows the session tempo (the service's
:class:`TempoClock`: set with ``/tempo``, from MIDI clock, or from Ableton Link) and plays
delivered clips on the audio device (:class:`DeviceSink`), quantized to the beat grid.

Nothing here stops the server: a MIDI port that is missing or vanishes is retried by
:class:`MidiInput`; an audio device that does not exist or fails is reported to whoever asked
(``/fail /play ...``) and re-opened on the next request; an unmapped note is counted.

Times are :func:`time.monotonic` seconds unless named *stream time* (the audio device's clock).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mido
import numpy as np
import yaml
from pydantic import ValidationError

from dreamsampler.config import ConfigError, LiveConfig
from dreamsampler.engine.jobs import JobFailed, QueueFull
from dreamsampler.engine.request import RequestError
from dreamsampler.server.clock import LinkUnavailableError, TempoError
from dreamsampler.server.device_sink import DeviceSink, JamLoop
from dreamsampler.server.folder_sink import SinkError
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
from dreamsampler.server.presets import (
    SEED_MAX,
    Preset,
    PresetError,
    PresetLibrary,
    load_presets,
    save_preset,
)
from dreamsampler.server.service import Delivered, Listener, Service, Submitted, Update

log = logging.getLogger(__name__)

LEAD_S = 0.05
"""Least time between scheduling a clip and its start, seconds (covers the device buffer)."""

MIDI_PARAM_FIELDS: dict[str, str] = {
    "strength": "strength",
    "guidance": "guidance_scale",
    "steps": "num_inference_steps",
    "seed": "seed",
    "duration": "duration",
    "bars": "bars",
    "lora_scale": "lora_scale",
}
"""MIDI-map parameter names → request/session field names (``tempo`` and ``volume`` are live
settings, not request fields)."""

LearnWaiter = Callable[[Learned | None, str], None]
"""Called once when MIDI learn binds (``Learned``, "") or is replaced (None, reason)."""


class LiveError(RequestError):
    """A live command cannot be carried out; the message says why (sent with ``/fail``)."""


@dataclass(frozen=True)
class Played:
    """A clip sent to the audio device: job id, device clip id, start in stream time and in
    monotonic time (seconds; ``None`` = as soon as possible)."""

    job_id: int
    clip_id: int
    stream_time: float | None
    clock_time: float | None


class Live:
    """The live-performance controller of one :class:`Service`.

    Args:
        service: the service requests go to (its ``clock`` is the session tempo).
        config: the ``live`` section (default: ``service.config.live``).

    Raises:
        ConfigError: the MIDI map file exists but is invalid.
    """

    def __init__(self, service: Service, config: LiveConfig | None = None) -> None:
        self.service = service
        self.config = config or service.config.live
        self.clock = service.clock
        self.presets_dir = Path(self.config.presets_dir)
        self.library = PresetLibrary()
        self.preset_errors: list[PresetError] = []
        self.reload_presets()
        self.map_path = Path(self.config.midi_map or self.presets_dir / "midi_map.yaml")
        self.mapper = self._load_map()
        self.midi: MidiInput | None = None
        self.device: DeviceSink | None = None
        self.device_error: str | None = None
        self.jam_loop: JamLoop | None = None
        self.volume = 1.0
        """Linear gain of clips sent to the audio device (MIDI parameter ``volume``)."""
        self.bank: str | None = None
        """Bank chosen by MIDI program change (jam mode cycles through it)."""
        self.played: list[Played] = []
        self.on_learned: list[Callable[[Learned], None]] = []
        self._learn_waiter: LearnWaiter | None = None
        self._note_jobs: dict[int, int] = {}
        self._last_seed: dict[str, int] = {}
        self._underruns_before = 0

    # ---- lifecycle ----------------------------------------------------------------------------

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
        """Start Link (if configured), MIDI input and the audio device.

        A missing MIDI port or audio device is logged and retried later; the server serves on.

        Raises:
            ConfigError: Link asked for but ``aalink`` is not installed, or the MIDI backend
                cannot be loaded.
        """
        if self.config.link:
            try:
                self.clock.enable_link()
            except LinkUnavailableError as exc:
                raise ConfigError(f"live.link: {exc}") from None
        if self.config.midi_in:
            midi = MidiInput(self.config.midi_in, self.handle_midi, self.config.midi_backend)
            try:
                await midi.start()
            except ImportError as exc:
                raise ConfigError(f"live.midi_backend {self.config.midi_backend!r}: {exc}"
                                  ) from None
            self.midi = midi
        if self.config.audio_out is not None:
            try:
                self._open_device()
            except LiveError as exc:
                log.error("%s; clips still go to the output folder", exc)

    async def close(self) -> None:
        """Stop jam mode and the audio device first, then MIDI input and Link."""
        await self.jam_off()
        self._close_device()
        if self.midi is not None:
            await self.midi.stop()
            self.midi = None
        self.clock.disable_link()

    # ---- presets ------------------------------------------------------------------------------

    def reload_presets(self) -> None:
        """(Re)load the presets folder; refused files are logged with file and key."""
        if not self.presets_dir.is_dir():
            log.warning("presets folder %s not found: no presets loaded", self.presets_dir)
            self.library, self.preset_errors = PresetLibrary(), []
            return
        self.library, self.preset_errors = load_presets(self.presets_dir)
        for error in self.preset_errors:
            log.warning("preset refused: %s", error)
        log.info("%d presets loaded from %s", len(self.library), self.presets_dir)

    def preset_names(self) -> list[str]:
        """Loaded preset names, bank by bank (banks sorted by name, presets in file order)."""
        return [name for bank in self.library.banks for name in bank.presets]

    def preset(self, name: str) -> Preset:
        """The preset called ``name``.

        Raises:
            LiveError: no such preset (the message lists what is loaded).
        """
        try:
            return self.library[name]
        except KeyError:
            known = ", ".join(self.preset_names()) or "none"
            raise LiveError(f"unknown preset {name!r} (loaded: {known})") from None

    def preset_values(
        self, preset: Preset, overrides: Sequence[tuple[str, float | int]] = (),
    ) -> tuple[dict[str, Any], bool]:
        """Request values for one generation from ``preset`` and whether it is a transfer.

        The seed follows the preset's seed policy (the previous seed of this preset is
        remembered once the job is accepted, see :meth:`submit_preset`). ``overrides`` are
        MIDI-map parameter names and values (velocity mapping), e.g. ``("strength", 0.7)``.
        """
        seed = preset.seed.next_seed(self._last_seed.get(preset.name))
        values: dict[str, Any] = {
            "prompt": preset.prompt,
            "negative_prompt": preset.negative_prompt,
            "seed": seed,
            "num_inference_steps": preset.steps,
            "guidance_scale": preset.guidance,
            "lora_scale": preset.lora_scale,
            "name": f"{time.strftime('%Y%m%d-%H%M%S')}_{preset.name}_{seed}",
            "extra": {"preset": preset.name},
        }
        if preset.concept:
            values["concept"] = preset.concept
        if preset.bars is not None:
            values["bars"] = preset.bars
        else:
            values["duration"] = preset.seconds
        transfer = preset.input_clip is not None
        if transfer:
            values["input_path"] = str(preset.input_clip)
            values["strength"] = preset.strength
        for name, value in overrides:
            if name in MIDI_PARAM_FIELDS:
                values[MIDI_PARAM_FIELDS[name]] = value
        return values, transfer

    def submit_preset(
        self,
        name: str,
        overrides: Sequence[tuple[str, float | int]] = (),
        listener: Listener | None = None,
        note: int | None = None,
    ) -> Submitted:
        """Queue a generation from preset ``name``; the clip goes to the folder, and also to
        the audio device (at the next ``play_quantum`` boundary) if the preset's sinks include
        ``device``.

        Raises:
            LiveError: unknown preset. RequestError, SinkError, QueueFull: as
                :meth:`Service.submit`.
        """
        preset = self.preset(name)
        values, transfer = self.preset_values(preset, overrides)
        to_device = "device" in preset.sinks

        def on_update(update: Update) -> None:
            if listener is not None:
                listener(update)
            if to_device and isinstance(update, Delivered):
                try:
                    self.play_delivered(update)
                except LiveError as exc:
                    log.warning("clip %d of preset %s is in the folder, not on the device: %s",
                                update.job_id, name, exc)

        submitted = self.service.submit(values, transfer=transfer, listener=on_update)
        self._last_seed[preset.name] = int(values["seed"])
        if note is not None:
            self._note_jobs[note] = submitted.job_id
        return submitted

    def save_session_preset(self, name: str) -> Path:
        """Save the session parameters as preset ``name`` (``DIR/<name>.yaml``, atomic) and
        reload the presets.

        Raises:
            LiveError: no prompt in the session, an invalid name or value, a preset of that
                name in a bank file, or the folder cannot be written.
        """
        s = self.service.session
        if not s.prompt.strip():
            raise LiveError("the session has no prompt to save (set /param/prompt)")
        existing = self.library.get(name)
        if existing is not None and existing.bank != "default":
            raise LiveError(f"preset {name!r} belongs to bank {existing.bank!r}; choose "
                            "another name")
        data: dict[str, Any] = {
            "name": name, "prompt": s.prompt, "negative_prompt": s.negative_prompt,
            "seed": s.seed, "steps": s.num_inference_steps, "guidance": s.guidance_scale,
            "lora_scale": s.lora_scale,
        }
        if s.bars:
            data["bars"] = s.bars
        else:
            data["seconds"] = s.duration
        if s.input_path:
            data["input_clip"] = s.input_path
            data["strength"] = s.strength
        try:
            preset = Preset.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "preset"
            raise LiveError(f"cannot save preset {name!r}: {where}: {first['msg']}") from None
        try:
            path = save_preset(self.presets_dir, preset)
        except OSError as exc:
            raise LiveError(f"cannot save preset {name!r} in {self.presets_dir}: "
                            f"{exc.strerror or exc}") from None
        self.reload_presets()
        return path

    # ---- tempo and parameters -----------------------------------------------------------------

    def set_tempo(self, bpm: float) -> float:
        """Set the session tempo (BPM); returns it.

        Raises:
            LiveError: not > 20 and <= 999 BPM.
        """
        try:
            return self.clock.set_tempo(bpm)
        except TempoError as exc:
            raise LiveError(str(exc)) from None

    def set_param(self, name: str, value: float | int) -> None:
        """Set a MIDI-map parameter (see :data:`PARAM_RANGES`): ``tempo`` (BPM), ``volume``
        (linear gain) or a session default.

        Raises:
            LiveError: unknown parameter or bad tempo. RequestError: invalid session value.
        """
        if name == "tempo":
            self.set_tempo(float(value))
        elif name == "volume":
            self.volume = max(0.0, float(value))
        elif name in MIDI_PARAM_FIELDS:
            self.service.set_param(MIDI_PARAM_FIELDS[name], value)
        else:
            raise LiveError(f"unknown parameter {name!r}")

    # ---- MIDI ---------------------------------------------------------------------------------

    def handle_midi(self, spec: str, msg: mido.Message) -> None:
        """Handle one MIDI message (on the loop thread): clock messages drive the tempo, the
        rest go through the MIDI map. Failures are logged, never raised."""
        if self.clock.handle_midi(msg, msg.time or None):
            return
        for action in self.mapper.handle(msg):
            try:
                self.do(action)
            except (RequestError, SinkError, QueueFull, OSError, ValueError) as exc:
                log.warning("MIDI %s from %r: %s", action, spec, exc)

    def do(self, action: Action) -> None:
        """Carry out one MIDI-map action.

        Raises:
            LiveError, RequestError, SinkError, QueueFull: the action was refused.
        """
        if isinstance(action, TriggerPreset):
            self.submit_preset(action.name, action.overrides, note=action.note)
        elif isinstance(action, CancelNote):
            job_id = self._note_jobs.pop(action.note, None)
            if job_id is not None and self.service.cancel(job_id):
                log.info("note %d released: job %d cancelled", action.note, job_id)
        elif isinstance(action, SetParam):
            self.set_param(action.name, action.value)
        elif isinstance(action, SelectBank):
            self._select_bank(action)
        elif isinstance(action, Learned):
            self._learned(action)

    def _select_bank(self, action: SelectBank) -> None:
        if action.name is not None:
            self.bank = action.name
        else:
            try:
                self.bank = self.library.bank(action.index).name
            except IndexError:
                log.warning("program change %d: no bank %d (%d loaded)", action.index,
                            action.index, len(self.library.banks))
                return
        log.info("bank %s selected", self.bank)

    def learn(self, param: str, waiter: LearnWaiter | None = None) -> None:
        """Arm MIDI learn for ``param``; ``waiter`` is called when the next CC binds it (or
        with None and a reason when another learn replaces this one).

        Raises:
            LiveError: unknown parameter, or no MIDI input configured.
        """
        if param not in PARAM_RANGES:
            raise LiveError(f"unknown parameter {param!r}; known: {', '.join(PARAM_RANGES)}")
        if not self.config.midi_in:
            raise LiveError("no MIDI input configured (start the server with --midi-in PORT)")
        previous, self._learn_waiter = self._learn_waiter, waiter
        self.mapper.learn(param)
        if previous is not None:
            previous(None, f"replaced by a MIDI learn of {param}")

    def midi_port_states(self) -> list[str]:
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

    # ---- audio device -------------------------------------------------------------------------

    def _device_spec(self) -> str | int | None:
        spec = self.config.audio_out
        return int(spec) if spec is not None and spec.isdigit() else spec

    def _open_device(self) -> DeviceSink:
        sink = DeviceSink(device=self._device_spec(), on_error=self._device_failed)
        try:
            sink.start()
        except Exception as exc:  # AudioDeviceNotFoundError, PortAudioError, OSError
            sink.close()
            self.device_error = str(exc)
            raise LiveError(f"audio device {self.config.audio_out!r} unavailable: {exc}"
                            ) from None
        self.device, self.device_error = sink, None
        return sink

    def _close_device(self) -> None:
        if self.device is not None:
            self._underruns_before += self.device.underruns
            self.device.close()
            self.device = None

    def _device_failed(self, exc: BaseException) -> None:  # helper thread
        self.device_error = str(exc)
        log.error("audio device %r failed: %s; clips still go to the output folder",
                  self.config.audio_out, exc)

    def sink(self) -> DeviceSink:
        """The running device sink, (re)opened if it is not running.

        Raises:
            LiveError: no device configured, or it cannot be opened.
        """
        if self.config.audio_out is None:
            raise LiveError("no audio output device configured (start the server with "
                            "--audio-out DEVICE; 'dreamsampler audio devices' lists them)")
        if self.device is not None and not self.device.active:
            log.warning("audio device stream is not running (%s); re-opening",
                        self.device_error or "stopped")
            self._close_device()
        return self.device if self.device is not None else self._open_device()

    @property
    def underruns(self) -> int:
        """Audio output underruns since start (over every device stream opened)."""
        return self._underruns_before + (self.device.underruns if self.device else 0)

    def play(self, job_id: int, quantum: float | None = None) -> float:
        """Play delivered clip ``job_id`` on the device at the next multiple of ``quantum``
        beats (default ``live.play_quantum``; 0 = now). Returns the delay until it starts, s.

        Raises:
            LiveError: unknown job id (not among the kept clips) or no working device.
        """
        delivered = self.service.recent.get(job_id)
        if delivered is None:
            kept = ", ".join(str(k) for k in self.service.recent) or "none"
            raise LiveError(f"no delivered clip with job id {job_id} (kept: {kept})")
        return self.play_delivered(delivered, quantum)

    def play_delivered(self, delivered: Delivered, quantum: float | None = None) -> float:
        """Play a delivered clip (see :meth:`play`); returns the delay until it starts, s."""
        if delivered.audio is None:
            raise LiveError(f"job {delivered.job_id} has no audio in memory")
        sink = self.sink()
        q = self.config.play_quantum if quantum is None else quantum
        now = time.monotonic()
        at = self.clock.next_boundary(q, now + LEAD_S) if q > 0 else None
        try:
            at_stream = None if at is None else sink.monotonic_to_stream(at)
            clip_id = sink.play(delivered.audio, delivered.sample_rate, at_stream,
                                gain=self.volume)
        except (RuntimeError, ValueError) as exc:
            raise LiveError(f"cannot play job {delivered.job_id}: {exc}") from None
        self.played.append(Played(delivered.job_id, clip_id, at_stream, at))
        return 0.0 if at is None else max(0.0, at - now)

    async def stop(self) -> None:
        """Stop jam mode and fade out everything on the device (nothing to do without one)."""
        await self.jam_off()
        if self.device is not None:
            self.device.stop()

    # ---- jam ----------------------------------------------------------------------------------

    @property
    def jamming(self) -> bool:
        return self.jam_loop is not None and self.jam_loop.running

    async def jam_on(self, presets: Sequence[str] = ()) -> None:
        """Start jam mode: cycle through ``presets`` (default: the bank chosen by program
        change, else the session parameters with the seed advancing by one per clip).

        Raises:
            LiveError: unknown preset, no working device, or the first request is invalid.
        """
        names = list(presets)
        if not names and self.bank is not None:
            bank = next((b for b in self.library.banks if b.name == self.bank), None)
            names = list(bank.presets) if bank else []
        sink = self.sink()
        for name in names:
            self.preset(name)
        if not names:  # check the session can make a request before looping on it
            values, transfer = self.service.trigger_values()
            self.service.build_request(values, transfer)
        await self.jam_off()
        self.jam_loop = JamLoop(sink, self.clock, self._jam_source(names),
                                quantum_beats=float(self.clock.beats_per_bar))
        await self.jam_loop.start()
        log.info("jam on: %s", ", ".join(names) or "session parameters")

    async def jam_off(self) -> None:
        """Stop jam mode (the loop fades out); nothing happens when it is off."""
        if self.jam_loop is not None:
            await self.jam_loop.stop()
            self.jam_loop = None

    def _jam_source(self, names: list[str]) -> Callable[[int], Any]:
        async def request_next(n: int) -> tuple[np.ndarray, int]:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[Delivered] = loop.create_future()

            def on_update(update: Update) -> None:
                if done.done():
                    return
                if isinstance(update, Delivered):
                    done.set_result(update)
                elif isinstance(update, JobFailed):
                    done.set_exception(RuntimeError(f"job {update.job_id}: {update.message}"))

            if names:
                preset = self.preset(names[n % len(names)])
                values, transfer = self.preset_values(preset)
                submitted = self.service.submit(values, transfer=transfer, listener=on_update)
                self._last_seed[preset.name] = int(values["seed"])
            else:
                values, transfer = self.service.trigger_values()
                values["seed"] = (self.service.session.seed + n) % (SEED_MAX + 1)
                submitted = self.service.submit(values, transfer=transfer, listener=on_update)
            try:
                delivered = await done
            except asyncio.CancelledError:
                self.service.cancel(submitted.job_id)
                raise
            assert delivered.audio is not None
            return delivered.audio * np.float32(self.volume), delivered.sample_rate

        return request_next

    # ---- status -------------------------------------------------------------------------------

    def status_fields(self) -> tuple[float, str, int, int, int]:
        """``/status.reply``'s live fields: tempo (BPM), tempo source, underruns, unmapped
        MIDI notes, jam on (1/0)."""
        return (round(self.clock.bpm, 3), self.clock.source, self.underruns,
                self.mapper.unmapped_notes, int(self.jamming))


def status_without_live(service: Service) -> tuple[float, str, int, int, int]:
    """The live ``/status.reply`` fields for a server without a :class:`Live` controller."""
    return (round(service.clock.bpm, 3), service.clock.source, 0, 0, 0)
