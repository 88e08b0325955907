"""The supervised engine with real child processes: crash, wedge, device error, cancel, close.

Each test starts real engine processes (the first one in a session imports torch in the fork
server; later ones fork from it) and injects faults from inside them
(:mod:`tests.engine.faults`) or kills them with SIGKILL.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dreamsampler.engine.concepts import ConceptNotLoadedError
from dreamsampler.engine.families import ModelLoadError
from dreamsampler.engine.jobs import (
    EngineClosed,
    JobFailed,
    JobFinished,
    JobProgress,
    LocalEngine,
    QueueFull,
)
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.stems import SOURCES, SeparationRequest
from dreamsampler.engine.supervised import SupervisedEngine, is_fatal_error
from tests.conftest import write_pluck
from tests.engine.handmade import ti_concept

HOOK = "tests.engine.faults:on_step"


def _req(prompt: str = "bass", steps: int = 3, **kw: Any) -> GenerationRequest:
    return GenerationRequest(prompt, seed=1, num_inference_steps=steps, duration=0.5, **kw)


def _ti_concept(root: Path, name: str = "warm") -> Path:
    ti_concept(root, name)
    return root


def _run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 120))


async def _first_step(job: Any) -> None:
    async for event in job.events():
        if isinstance(event, JobProgress):
            return


def test_results_match_the_local_engine_bit_for_bit(tmp_path: Path) -> None:
    stems = importlib.util.find_spec("demucs") is not None  # the stems stage (issue 19)
    source = write_pluck(tmp_path / "pluck.wav", seconds=0.6)

    async def main() -> None:
        local = LocalEngine("tiny", "cpu", stems_model="tiny")
        await local.start()
        remote = SupervisedEngine("tiny", "cpu", stems_model="tiny")
        await remote.start()
        try:
            for i, request in enumerate([_req(), _req("pad", steps=4, scheduler="dpm++",
                                                       guidance_scale=3.0),
                                         _req("keys", count=2)]):  # takes: both come back
                a = await local.submit(request, i)[0].wait()
                job, _ = remote.submit(request, i)
                events = [e async for e in job.events()]
                b = events[-1]
                assert isinstance(a, JobFinished) and isinstance(b, JobFinished)
                assert len(a.results) == len(b.results) == request.count
                for x, y in zip(a.results, b.results, strict=True):
                    np.testing.assert_array_equal(x.audio, y.audio)
                assert b.result.sample_rate == a.result.sample_rate
                steps = [e.step for e in events if isinstance(e, JobProgress)]
                assert steps == list(range(1, request.num_inference_steps + 1))
            # stems: a clip with its stems, and a separation, in the engine process
            for i, request in enumerate([_req(stems=1), SeparationRequest(source)] if stems
                                        else []):
                a = await local.submit(request, 10 + i)[0].wait()
                b = await remote.submit(request, 10 + i)[0].wait()
                assert isinstance(a, JobFinished) and isinstance(b, JobFinished), (a, b)
                assert a.result.stems is not None and b.result.stems is not None
                assert set(a.result.stems) == set(b.result.stems) == set(SOURCES)
                for name, stem in a.result.stems.items():
                    np.testing.assert_allclose(b.result.stems[name], stem, atol=1e-6)
            status = remote.status()
            assert (status.family, status.restarts, status.queued) == ("musicldm", 0, 0)
        finally:
            await local.close()
            await remote.close()

    _run(main)


def test_killed_process_fails_the_job_restarts_with_concepts_and_serves_on(
        tmp_path: Path) -> None:
    concepts = _ti_concept(tmp_path)

    async def main() -> None:
        engine = SupervisedEngine("tiny", "cpu", concepts_dir=concepts, step_hook=HOOK)
        await engine.start()
        try:
            await engine.load_concept("warm")
            before = await engine.submit(_req("a <warm> pad"), 1)[0].wait()
            assert isinstance(before, JobFinished)
            pid = engine.pid
            held, _ = engine.submit(_req("hang"), 2)
            queued, position = engine.submit(_req("a <warm> pad"), 3)
            assert position == 1
            await _first_step(held)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            failed = await held.wait()
            assert isinstance(failed, JobFailed) and not failed.cancelled
            assert "engine crashed" in failed.message and "SIGKILL" in failed.message
            after = await queued.wait()  # ran on the new process, with the concept restored
            assert isinstance(after, JobFinished)
            np.testing.assert_array_equal(before.result.audio, after.result.audio)
            assert engine.pid != pid and engine.status().restarts == 1
            assert [c.name for c in engine.list_concepts()] == ["warm"]
            assert (await engine.load_concept("warm")).already_loaded  # idempotent, restored
            # a crash by the process's own hand (os._exit) is handled the same way
            crashed = await engine.submit(_req("exit"), 4)[0].wait()
            assert isinstance(crashed, JobFailed) and "exit code 3" in crashed.message
            assert isinstance(await engine.submit(_req(), 5)[0].wait(), JobFinished)
            assert engine.status().restarts == 2
        finally:
            await engine.close()

    _run(main)


def test_wedged_step_is_killed_by_the_watchdog() -> None:
    async def main() -> None:
        engine = SupervisedEngine("tiny", "cpu", watchdog_s=1.0, step_hook=HOOK)
        await engine.start()
        try:
            wedged, _ = engine.submit(_req("hang"), 1)
            after, _ = engine.submit(_req(), 2)
            failed = await wedged.wait()
            assert isinstance(failed, JobFailed)
            assert "engine wedged: no progress for 1 s" in failed.message
            assert isinstance(await after.wait(), JobFinished)
            assert engine.status().restarts == 1
        finally:
            await engine.close()

    _run(main)


@pytest.mark.parametrize("prompt", ["cuda error", "interrupt"])
def test_device_errors_and_base_exceptions_replace_the_process(prompt: str) -> None:
    async def main() -> None:
        engine = SupervisedEngine("tiny", "cpu", step_hook=HOOK)
        await engine.start()
        try:
            pid = engine.pid
            failed = await engine.submit(_req(prompt), 1)[0].wait()
            assert isinstance(failed, JobFailed) and "engine device error" in failed.message
            expected = "illegal memory access" if prompt == "cuda error" else "Interrupt: stop"
            assert expected in failed.message
            assert isinstance(await engine.submit(_req(), 2)[0].wait(), JobFinished)
            assert engine.pid != pid and engine.status().restarts == 1
        finally:
            await engine.close()

    _run(main)


def test_ordinary_errors_fail_only_the_job(tmp_path: Path) -> None:
    async def main() -> None:
        engine = SupervisedEngine("tiny", "cpu", concepts_dir=tmp_path)
        await engine.start()
        try:
            pid = engine.pid
            bad = _req("x", input_path=tmp_path / "vanished.wav", strength=0.5)
            failed = await engine.submit(bad, 1)[0].wait()
            assert isinstance(failed, JobFailed) and "vanished.wav: no such file" in failed.message
            with pytest.raises(ConceptNotLoadedError, match="not loaded"):
                await engine.unload_concept("nothing")
            assert engine.pid == pid and engine.status().restarts == 0
        finally:
            await engine.close()

    _run(main)


def test_cancel_queue_order_barrier_and_close_with_pending_work(tmp_path: Path) -> None:
    concepts = _ti_concept(tmp_path)

    async def main() -> None:
        engine = SupervisedEngine("tiny", "cpu", queue_size=2, concepts_dir=concepts,
                                  step_hook=HOOK, watchdog_s=60.0)
        await engine.start()
        running, _ = engine.submit(_req("bass", steps=400), 1)
        await _first_step(running)
        assert engine.cancel(1) and not engine.cancel(99)
        end = await running.wait()
        assert isinstance(end, JobFailed) and end.cancelled and end.message == "cancelled"
        # concept operations run in arrival order with jobs
        job, _ = engine.submit(_req("a <warm> pad"), 2)
        load = asyncio.ensure_future(engine.load_concept("warm"))
        first = await job.wait()
        assert isinstance(first, JobFinished)
        assert (await load).name == "warm"
        await engine.barrier()
        # close: the running (wedged) job, queued jobs, concept operations and barriers all fail
        held, _ = engine.submit(_req("hang"), 3)
        await _first_step(held)
        queued, _ = engine.submit(_req(), 4)
        engine.submit(_req(), 5)
        with pytest.raises(QueueFull):
            engine.submit(_req(), 6)
        assert engine.cancel(5)
        unload = asyncio.ensure_future(engine.unload_concept("warm"))
        sync = asyncio.ensure_future(engine.barrier())
        await asyncio.sleep(0)
        pid = engine.pid
        await engine.close("test over")
        for j in (held, queued):
            end = await j.wait()
            assert isinstance(end, JobFailed) and end.message == "test over"
        for pending in (unload, sync):
            with pytest.raises(EngineClosed, match="test over"):
                await pending
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        with pytest.raises(QueueFull):
            engine.submit(_req(), 7)

    _run(main)


def test_a_model_that_cannot_load_is_refused_at_start() -> None:
    async def main() -> None:
        engine = SupervisedEngine("/nonexistent/model", "cpu")
        with pytest.raises(ModelLoadError, match="/nonexistent/model"):
            await engine.start()
        await engine.close()

    _run(main)


def test_fatal_error_classification() -> None:
    assert is_fatal_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert is_fatal_error(KeyboardInterrupt())
    assert not is_fatal_error(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_fatal_error(ValueError("bad"))


def test_backoff_is_capped_exponential_and_never_gives_up() -> None:
    from dreamsampler.engine.supervised import backoff_delay

    delays = [backoff_delay(n, 0.5, 30.0) for n in range(1, 10)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_delay(10_000, 0.5, 30.0) == 30.0  # no overflow, still a finite retry


def test_five_kills_in_a_row_including_loading_replacements_end_with_a_working_engine(
        ) -> None:
    """kill -9 the running engine, then each of three replacements while it loads, then the
    running engine again: every job is answered, work fails fast with the true reason while a
    restart has failed, and the engine serves again (issue 22, item 1)."""
    async def main() -> None:
        engine = SupervisedEngine("tiny", "cpu", step_hook=HOOK, backoff_s=0.05,
                                  backoff_max_s=0.2, load_watchdog_s=60.0)
        await engine.start()
        states: asyncio.Queue[str] = asyncio.Queue()
        kills = {"loading": 0}
        fast_failures: list[str] = []

        def on_state(state: str) -> None:
            states.put_nowait(state)
            if state.startswith("restarting") and kills["loading"] < 3:
                kills["loading"] += 1
                assert engine.pid is not None
                os.kill(engine.pid, signal.SIGKILL)  # the replacement, while it loads
            elif state.startswith("failed:"):
                try:
                    engine.submit(_req(), 100 + len(fast_failures))
                except QueueFull as exc:
                    fast_failures.append(str(exc))

        engine.on_state.append(on_state)

        async def until_ready() -> list[str]:
            seen = []
            while (state := await states.get()) != "ready":
                seen.append(state)
            return seen

        try:
            running, _ = engine.submit(_req("hang"), 1)
            queued, _ = engine.submit(_req(), 2)
            await _first_step(running)
            assert engine.pid is not None
            os.kill(engine.pid, signal.SIGKILL)  # kill 1: the running engine
            crashed = await running.wait()
            assert isinstance(crashed, JobFailed) and "SIGKILL" in crashed.message
            waited = await queued.wait()  # answered at once when the first reload failed
            assert isinstance(waited, JobFailed)
            assert "engine restart failed" in waited.message
            assert "while loading the model" in waited.message
            seen = await until_ready()
            assert kills["loading"] == 3
            assert [s.split(";")[0] for s in seen if s.startswith("restarting")] == [
                "restarting 1", "restarting 2", "restarting 3", "restarting 4"]
            assert sum(s.startswith("failed: engine restart failed") for s in seen) == 3
            assert len(fast_failures) == 3
            assert all("while loading the model" in f for f in fast_failures)
            # kill 5: the running engine again, at once after the crash loop
            again, _ = engine.submit(_req("hang"), 3)
            await _first_step(again)
            os.kill(engine.pid, signal.SIGKILL)
            assert isinstance(await again.wait(), JobFailed)
            # a process that took a job and died blames the job: restarted at once
            assert (await until_ready()) == ["restarting 1"]
            assert engine.status().state == "ready"
            assert isinstance(await engine.submit(_req(), 4)[0].wait(), JobFinished)
            assert engine.failures == 0 and engine.status().restarts == 2
        finally:
            await engine.close()

    _run(main)


def test_a_replacement_that_hangs_while_loading_is_killed_and_retried() -> None:
    """SIGSTOP the replacement while it loads: the load watchdog kills it, the queued job is
    answered with the reason, and the next replacement serves (issue 22, item 2)."""
    async def main() -> None:
        engine = SupervisedEngine("tiny", "cpu", step_hook=HOOK, backoff_s=0.01,
                                  load_watchdog_s=60.0)
        await engine.start()
        stopped: list[int] = []
        ready = asyncio.Event()

        def on_state(state: str) -> None:
            if state == "restarting 1":
                assert engine.pid is not None
                stopped.append(engine.pid)
                os.kill(engine.pid, signal.SIGSTOP)
                engine.load_watchdog_s = 60.0
            elif state == "ready":
                ready.set()

        engine.on_state.append(on_state)
        try:
            running, _ = engine.submit(_req("hang"), 1)
            queued, _ = engine.submit(_req(), 2)
            await _first_step(running)
            engine.load_watchdog_s = 0.2  # the stopped replacement's load watchdog
            assert engine.pid is not None
            os.kill(engine.pid, signal.SIGKILL)
            assert isinstance(await running.wait(), JobFailed)
            waited = await queued.wait()
            assert isinstance(waited, JobFailed) and "model not loaded after 0.2 s" in \
                waited.message
            await ready.wait()
            with pytest.raises(ProcessLookupError):  # killed, not left stopped
                for _ in range(1000):
                    os.kill(stopped[0], 0)
                    await asyncio.sleep(0.01)
            assert isinstance(await engine.submit(_req(), 3)[0].wait(), JobFinished)
        finally:
            await engine.close()

    _run(main)


def test_a_request_error_reads_the_same_as_in_the_local_engine(tmp_path: Path) -> None:
    """Inpainting on MusicLDM is the request's fault: both engines report the sampler's plain
    message (no "RequestError:" prefix), as the shared failure_message maps it."""
    import soundfile as sf

    clip = tmp_path / "in.wav"
    sf.write(clip, (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32), 16000)
    request = GenerationRequest(prompt="x", num_inference_steps=2, duration=0.5,
                                input_path=clip, mask_start=0.1, mask_end=0.2)

    async def main() -> None:
        local = LocalEngine("tiny", "cpu")
        remote = SupervisedEngine("tiny", "cpu")
        await local.start()
        await remote.start()
        try:
            a = await local.submit(request, 1)[0].wait()
            b = [e async for e in remote.submit(request, 1)[0].events()][-1]
        finally:
            await local.close()
            await remote.close()
        assert isinstance(a, JobFailed) and isinstance(b, JobFailed)
        assert a.message == b.message == (
            "model family 'musicldm' cannot inpaint or continue audio (Stable Audio 3 can)")

    _run(main)
