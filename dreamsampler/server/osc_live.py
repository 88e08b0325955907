"""OSC handlers of the live-performance commands (``/preset/*``, ``/midi/learn``, ``/tempo``,
``/play``, ``/stop``, ``/jam``) and the device queries (``/midi/ports``, ``/audio/devices``),
dispatched by :class:`~dreamsampler.server.osc.OscServer` from the contract like every other
command.

Errors raised as :class:`~dreamsampler.server.live.LiveError` (a ``RequestError``) become
``/fail <address> <message>`` in the server's dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dreamsampler.engine.request import RequestError
from dreamsampler.server import device_sink
from dreamsampler.server.live import Live, LiveError
from dreamsampler.server.midi_map import Learned
from dreamsampler.server.notify import Address

if TYPE_CHECKING:
    from dreamsampler.server.osc import Handler, OscServer

log = logging.getLogger(__name__)

LIVE_ADDRESSES = ("/preset/trigger", "/preset/list", "/preset/save", "/midi/learn", "/tempo",
                  "/play", "/stop", "/jam", "/midi/ports", "/audio/devices")


class LiveHandlers:
    """The live commands of ``server`` carried out by ``live`` (None: they all ``/fail``)."""

    def __init__(self, server: OscServer, live: Live | None) -> None:
        self.server = server
        self.live = live
        if live is not None:
            live.on_learned.append(self._broadcast_learned)

    def handlers(self) -> dict[str, Handler]:
        """Address → handler for every live command."""
        table: dict[str, Handler] = {
            "/preset/trigger": self._trigger,
            "/preset/list": self._list,
            "/preset/save": self._save,
            "/midi/learn": self._learn,
            "/tempo": self._tempo,
            "/play": self._play,
            "/stop": self._stop,
            "/jam": self._jam,
        }
        if self.live is None:
            table = {address: self._disabled for address in table}
        # these answer without live performance too (no MIDI input open; the devices there are)
        table["/midi/ports"] = self._midi_ports
        table["/audio/devices"] = self._audio_devices
        return table

    def _disabled(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        raise LiveError("live performance is not enabled on this server")

    @property
    def _live(self) -> Live:
        assert self.live is not None
        return self.live

    def _background(self, sender: Address, address: str,
                    work: Callable[[], Awaitable[tuple[Any, ...]]]) -> None:
        """Run ``work`` on the loop; ``/done address *result`` or ``/fail address message``."""
        async def run() -> None:
            try:
                result = await work()
            except RequestError as exc:  # LiveError included
                self.server.fail(sender, address, str(exc))
                return
            except Exception as exc:
                log.exception("%s failed", address)
                self.server.fail(sender, address, f"internal error: {type(exc).__name__}: {exc}")
                return
            self.server.reply(sender, "/done", address, *result)

        self.server.spawn(run())

    # ---- handlers -----------------------------------------------------------------------------

    def _trigger(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        submitted = self._live.submit_preset(
            values["name"], listener=self.server.job_listener(sender, address))
        self.server.reply(sender, "/queued", submitted.job_id, submitted.position)

    def _list(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        self.server.reply(sender, "/preset.list", *self._live.preset_names())

    def _save(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        path = self._live.save_session_preset(values["name"])
        self.server.reply(sender, "/done", address, str(path))

    def _learn(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        def bound(learned: Learned | None, reason: str) -> None:
            if learned is None:
                self.server.fail(sender, address, reason)
            else:
                self.server.reply(sender, "/done", address, learned.param, learned.cc,
                                  learned.channel)

        self._live.learn(values["param"], bound)

    def _broadcast_learned(self, learned: Learned) -> None:
        self.server.broadcast("/midi.learned", learned.param, learned.cc, learned.channel)

    def _midi_ports(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        ports = self.live.midi_port_states() if self.live is not None else []
        self.server.reply(sender, "/midi.ports", *ports)

    def _audio_devices(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        async def work() -> None:
            # PortAudio's first initialisation can take a while (it probes JACK): off the loop
            names = await asyncio.to_thread(device_sink.output_device_names)
            self.server.reply(sender, "/audio.devices", *names)

        self.server.spawn(work())

    def _tempo(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        bpm = self._live.set_tempo(values["bpm"])
        self.server.reply(sender, "/done", address, float(bpm))

    def _play(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        job_id = values["job_id"]
        try:
            delay = self._live.play(job_id, values.get("quantum"))
        except LiveError as exc:
            self.server.fail(sender, address, str(exc), job_id)
            return
        self.server.reply(sender, "/done", address, job_id, round(delay, 6))

    def _stop(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        async def work() -> tuple[Any, ...]:
            await self._live.stop()
            return ()

        self._background(sender, address, work)

    def _jam(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        state = values["state"].strip().lower()
        if state not in ("on", "off"):
            raise LiveError(f"state must be 'on' or 'off', got {values['state']!r}")
        names = [n.strip() for n in values.get("presets", "").split(",") if n.strip()]
        if state == "off" and names:
            raise LiveError("/jam off takes no preset names")

        async def work() -> tuple[Any, ...]:
            if state == "on":
                await self._live.jam_on(names)
            else:
                await self._live.jam_off()
            return (state,)

        self._background(sender, address, work)

