"""The standard sinks, built from the configuration: the output folder (required: a job whose clip
cannot be written fails) and the audio device (optional: a device problem is reported beside the
clip, which stays in the folder). The service receives them as plain
:class:`~dreamsampler.server.sinks.Sink` peers.
"""

from __future__ import annotations

from dreamsampler.config import Config
from dreamsampler.server.clock import TempoClock
from dreamsampler.server.delivery import DEVICE, FOLDER
from dreamsampler.server.device_sink import DeviceSink
from dreamsampler.server.folder_sink import FolderSink
from dreamsampler.server.sinks import Sink


def standard_sinks(config: Config, clock: TempoClock) -> dict[str, Sink]:
    """``{"folder": FolderSink, "device": DeviceSink}`` for ``config`` (the device plays on
    ``clock``'s beat grid)."""
    live = config.live
    return {
        FOLDER: FolderSink(config.output.dir, config.output.subtype, config.output.sample_rate),
        DEVICE: DeviceSink(live.audio_out, clock, live.play_quantum, live.keep_results),
    }
