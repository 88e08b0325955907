"""The one delivery path: typed jobs through the service to sinks that are peers, with a real
tiny engine, real files and a third sink written for this test (a new sink is one class)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dreamsampler.engine.jobs import JobFailed, LocalEngine
from dreamsampler.server.clock import TempoClock
from dreamsampler.server.delivery import (
    DEVICE,
    FOLDER,
    Clip,
    Delivered,
    Delivery,
    GenerationParams,
    Update,
)
from dreamsampler.server.device_sink import DeviceSink
from dreamsampler.server.folder_sink import FolderSink
from dreamsampler.server.service import JobError, Service
from dreamsampler.server.sinks import SinkError
from tests.conftest import make_config


class MemorySink:
    """A sink keeping clips in memory; ``fail`` makes every delivery raise; with ``gate`` a
    delivery waits until the gate opens (a slow sink: the folder's fsync, say)."""

    def __init__(self, fail: bool = False, *, name: str = "memory", required: bool = False,
                 gate: asyncio.Event | None = None) -> None:
        self.name = name
        self.required = required
        self.fail = fail
        self.gate = gate
        self.offered: list[int] = []
        self.clips: list[Clip] = []
        self.delivered = asyncio.Event()

    async def start(self) -> None:
        pass

    def check(self, job: Delivery | None = None) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {}

    def offer(self, clip: Clip) -> None:
        self.offered.append(clip.job_id)

    async def deliver(self, clip: Clip) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise SinkError(f"{self.name}: full")
        self.clips.append(clip)
        self.delivered.set()
        return len(self.clips)

    async def stop(self) -> None:
        pass

    async def close(self) -> None:
        pass


def _service(tmp_path: Path, memory: MemorySink, **overrides: Any) -> Service:
    config = make_config(tmp_path, **overrides)
    folder = FolderSink(config.output.dir, "FLOAT")
    return Service(config, LocalEngine("tiny", "cpu"), sinks={FOLDER: folder, "memory": memory})


def test_a_job_reaches_every_sink_it_names_and_one_reply(tmp_path: Path) -> None:
    memory = MemorySink()

    async def main() -> None:
        service = _service(tmp_path, memory, **{"live.tempo": 120.0})
        await service.start()
        updates: list[Update] = []
        job = service.job(GenerationParams(prompt="pad", seed=5, bars=1),
                          sinks=(FOLDER, "memory"), name="pad", reply=updates.append)
        assert job.loop is not None and (job.loop.bars, job.loop.bpm) == (1, 120.0)
        delivered = await service.run(job)
        # a folder-only job is offered to the memory sink but not delivered there
        only_folder = await service.run(service.job(GenerationParams(prompt="pad", seed=6)))
        await service.close()
        assert isinstance(updates[-1], Delivered) and updates[-1] is delivered
        assert [type(u).__name__ for u in updates].count("Delivered") == 1
        assert delivered.receipts == {FOLDER: delivered.path, "memory": 1}
        assert memory.offered == [delivered.job_id, only_folder.job_id]
        assert [c.job_id for c in memory.clips] == [delivered.job_id]
        audio, sr = sf.read(delivered.path, dtype="float32", always_2d=True)
        clip = memory.clips[0].result
        assert sr == clip.sample_rate and audio.shape[0] == 2 * sr  # one bar at 120 BPM
        np.testing.assert_array_equal(audio.T, np.clip(clip.audio, -1, 1))

    asyncio.run(main())


def test_sink_failures(tmp_path: Path) -> None:
    """Another sink failing leaves the clip delivered (and says why); the folder failing or the
    only named sink failing fails the job."""
    memory = MemorySink(fail=True)

    async def main() -> None:
        service = _service(tmp_path, memory)
        await service.start()
        both = await service.run(service.job(GenerationParams(prompt="a"),
                                             sinks=(FOLDER, "memory")))
        assert both.path is not None and both.path.is_file()
        assert both.sink_errors == {"memory": "memory: full"}
        with pytest.raises(JobError, match="memory: full") as caught:
            await service.run(service.job(GenerationParams(prompt="a"), sinks=("memory",)))
        assert isinstance(caught.value.update, JobFailed)
        with pytest.raises(Exception, match="unknown sink 'tape'"):
            service.job(GenerationParams(prompt="a"), sinks=("tape",))
        assert (service.jobs_done, service.jobs_failed) == (1, 1)
        await service.close()

    asyncio.run(main())


def test_a_preset_naming_only_the_device_still_lands_in_the_folder(tmp_path: Path) -> None:
    """No device configured: the device part is reported, the folder holds the clip."""
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "hit.yaml").write_text("name: hit\nprompt: a hit\nseed: 4\nsteps: 2\n"
                                      "seconds: 0.5\nsinks: [device]\n")
    config = make_config(tmp_path)

    async def main() -> None:
        service = Service(config, LocalEngine("tiny", "cpu"))  # the standard sinks
        await service.start()
        job = service.preset_job("hit")
        assert job.sinks == (FOLDER, "device") and job.extra == {"preset": "hit"}
        delivered = await service.run(job)
        await service.close()
        assert delivered.path is not None and delivered.path.name.endswith("-hit-4.wav")
        assert "no audio output device configured" in delivered.sink_errors["device"]

    asyncio.run(main())


def test_sinks_take_the_clip_at_the_same_time(tmp_path: Path) -> None:
    """A slow sink named first does not hold up the others: the slow one only finishes once
    the memory sink has the clip (delivered one after another, this would wait forever)."""
    memory = MemorySink()
    slow = MemorySink(name="slow", gate=asyncio.Event())

    async def main() -> None:
        config = make_config(tmp_path)
        service = Service(config, LocalEngine("tiny", "cpu"), sinks={
            FOLDER: FolderSink(config.output.dir, "FLOAT"), "slow": slow, "memory": memory})
        await service.start()
        job = service.job(GenerationParams(prompt="a", seed=1),
                          sinks=("slow", FOLDER, "memory"))
        running = asyncio.create_task(service.run(job))
        await asyncio.wait_for(memory.delivered.wait(), 60)
        assert not running.done() and slow.clips == []
        slow.gate.set()
        delivered = await asyncio.wait_for(running, 60)
        await service.close()
        assert delivered.receipts["slow"] == 1 and delivered.receipts["memory"] == 1
        assert delivered.path is not None and delivered.path.is_file()

    asyncio.run(main())


def test_the_failure_policy_is_each_sinks_own(tmp_path: Path) -> None:
    """A required sink that fails fails the job although the folder has the clip; an optional
    one is reported beside the success; a failed job is offered to no sink, so the device
    cannot /play it, while a delivered one can be found there."""
    strict = MemorySink(fail=True, name="strict", required=True)
    loose = MemorySink(fail=True, name="loose")

    async def main() -> None:
        config = make_config(tmp_path)
        device = DeviceSink(None, TempoClock(120.0))  # no audio device: only the replay cache
        service = Service(config, LocalEngine("tiny", "cpu"), sinks={
            FOLDER: FolderSink(config.output.dir, "FLOAT"), DEVICE: device,
            "strict": strict, "loose": loose})
        await service.start()
        with pytest.raises(JobError, match="strict: full") as caught:
            await service.run(service.job(GenerationParams(prompt="a", seed=1),
                                          sinks=(FOLDER, "strict")))
        failed = caught.value.update.job_id
        ok = await service.run(service.job(GenerationParams(prompt="a", seed=2),
                                           sinks=(FOLDER, "loose")))
        with pytest.raises(JobError, match="loose: full"):  # every named sink failed
            await service.run(service.job(GenerationParams(prompt="a", seed=3),
                                          sinks=("loose",)))
        await service.close()
        assert ok.sink_errors == {"loose": "loose: full"} and ok.path is not None
        assert strict.offered == loose.offered == [ok.job_id]
        assert list(device.recent) == [ok.job_id]
        with pytest.raises(SinkError, match=f"no delivered clip with job id {failed}"):
            device.replay(failed)

    asyncio.run(main())


class _SecondTakeFails(FolderSink):
    """A real folder sink whose disk is full by the second take."""

    async def deliver(self, clip: Clip) -> Path:
        if clip.take == 2:
            raise SinkError("output folder: no space left on device")
        return await super().deliver(clip)


def test_takes_fan_out_to_the_folder_and_the_first_to_the_other_sinks(tmp_path: Path) -> None:
    """``count 3``: three WAVs in the folder (``Delivered.paths`` in take order), the other sink
    gets the first take only; a further take the folder cannot write fails the job (issue 21)."""
    memory = MemorySink()

    async def main() -> None:
        service = _service(tmp_path, memory)
        await service.start()
        delivered = await service.run(service.job(GenerationParams(prompt="pad", seed=5, count=3),
                                                  sinks=(FOLDER, "memory")))
        assert len(delivered.paths) == 3 and delivered.paths[0] == delivered.path
        assert [p.stem.rsplit("_", 1)[1] for p in delivered.paths] == ["take1", "take2", "take3"]
        assert all(p.is_file() for p in delivered.paths)
        assert [(c.take, c.result.record["seed"]) for c in memory.clips] == [(1, 5)]
        first, _ = sf.read(delivered.paths[0], dtype="float32", always_2d=True)
        np.testing.assert_array_equal(first.T, np.clip(memory.clips[0].result.audio, -1, 1))
        await service.close()

        (tmp_path / "full").mkdir()
        config = make_config(tmp_path / "full")
        broken = Service(config, LocalEngine("tiny", "cpu"),
                         sinks={FOLDER: _SecondTakeFails(config.output.dir, "FLOAT")})
        await broken.start()
        with pytest.raises(JobError, match="no space left"):
            await broken.run(broken.job(GenerationParams(prompt="pad", seed=5, count=2)))
        await broken.close()

    asyncio.run(main())
