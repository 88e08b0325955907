"""Audio output devices as PortAudio reports them: listing (``/audio/devices``, ``dreamsampler audio
devices``) and finding one by name or index."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class AudioDeviceNotFoundError(ValueError):
    """No output device matches the requested name; the message lists the devices."""


@dataclass(frozen=True)
class AudioDevice:
    """An audio device as PortAudio reports it (rates in Hz)."""

    index: int
    name: str
    hostapi: str
    max_output_channels: int
    max_input_channels: int
    default_samplerate: float


def _sd() -> Any:
    # Imported lazily: PortAudio scans for JACK when sounddevice is imported, so a JACK server
    # started later would not be seen if the import happened at module load.
    import sounddevice

    return sounddevice


def list_devices() -> list[AudioDevice]:
    """All audio devices (``dreamsampler audio devices``)."""
    sd = _sd()
    apis = sd.query_hostapis()
    return [
        AudioDevice(d["index"], d["name"], apis[d["hostapi"]]["name"], d["max_output_channels"],
                    d["max_input_channels"], float(d["default_samplerate"]))
        for d in sd.query_devices()
    ]


def output_device_names() -> list[str]:
    """Names of the output devices (``/audio.devices``), in PortAudio's order; empty (and logged)
    when the PortAudio library cannot be loaded.

    The first call imports sounddevice, which is when PortAudio looks for a JACK server.
    """
    try:
        devices = list_devices()
    except OSError as exc:  # PortAudio library missing
        log.warning("cannot list audio devices: %s", exc)
        return []
    return [d.name for d in devices if d.max_output_channels > 0]


def find_output_device(name: str | int | None) -> AudioDevice:
    """The output device whose name contains ``name`` (case-insensitive; exact name first), the
    device with that index, or the default output device for None.

    Raises:
        AudioDeviceNotFoundError: nothing matches; the message lists the output devices.
    """
    devices = [d for d in list_devices() if d.max_output_channels > 0]
    listing = "; ".join(f"[{d.index}] {d.name} ({d.hostapi}, {d.max_output_channels} out)"
                        for d in devices) or "none"
    if name is None:
        default = _sd().default.device[1]
        match = [d for d in devices if d.index == default] or devices[:1]
    elif isinstance(name, int):
        match = [d for d in devices if d.index == name]
    else:
        match = [d for d in devices if d.name == name] or [
            d for d in devices if name.lower() in d.name.lower()]
    if not match:
        raise AudioDeviceNotFoundError(f"no audio output device matches {name!r}; "
                                       f"output devices: {listing}")
    return match[0]
