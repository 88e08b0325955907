"""LocalEngine's async job interface, with real threads."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dreamsampler.engine.families import load_model
from dreamsampler.engine.jobs import (
    JobFailed,
    JobFinished,
    JobProgress,
    JobStarted,
    LocalEngine,
    QueueFull,
)
from dreamsampler.engine.request import GenerationRequest


def _req(steps: int = 3) -> GenerationRequest:
    return GenerationRequest("bass", seed=1, num_inference_steps=steps, duration=0.5)


def test_event_order_positions_cancel_and_queue_bound() -> None:
    async def main() -> None:
        engine = LocalEngine("tiny", "cpu", queue_size=2)
        await engine.start()
        gate = threading.Event()
        blocked = asyncio.ensure_future(engine.run_exclusive(lambda m: gate.wait(10)))
        await asyncio.sleep(0.05)
        first, pos1 = engine.submit(_req(), 1)
        second, pos2 = engine.submit(_req(), 2)
        assert (pos1, pos2) == (0, 1)
        with pytest.raises(QueueFull):
            engine.submit(_req(), 3)
        assert engine.cancel(2) and not engine.cancel(99)
        gate.set()
        await blocked
        events = [e async for e in first.events()]
        assert isinstance(events[0], JobStarted) and isinstance(events[-1], JobFinished)
        assert [e.step for e in events if isinstance(e, JobProgress)] == [1, 2, 3]
        cancelled = await second.wait()
        assert isinstance(cancelled, JobFailed) and cancelled.cancelled
        assert engine.status().queued == 0 and engine.status().running is None
        await engine.close()

    asyncio.run(main())


def test_engine_reports_failures_as_events(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        engine = LocalEngine("tiny", "cpu")
        await engine.start()
        bad = tmp_path / "vanished.wav"
        job, _ = engine.submit(
            GenerationRequest("x", input_path=bad, strength=0.5, duration=0.5), 5
        )
        end = await job.wait()
        assert isinstance(end, JobFailed) and "vanished.wav: no such file" in end.message
        await engine.close()

    asyncio.run(main())


def test_base_exception_in_the_sampler_fails_the_job_and_the_worker_serves_on() -> None:
    """A BaseException (not an Exception) raised by the model used to kill the worker thread;
    every later job then waited forever."""

    class Interrupt(BaseException):
        pass

    async def main() -> None:
        model = load_model("tiny", "cpu")
        denoise = model.denoise
        calls = 0

        def explode_once(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls == 1:
                raise Interrupt("from the model")
            return denoise(*args, **kwargs)

        model.denoise = explode_once  # type: ignore[method-assign]
        engine = LocalEngine(model=model)
        await engine.start()
        first, _ = engine.submit(_req(), 1)
        second, _ = engine.submit(_req(), 2)
        failed = await asyncio.wait_for(first.wait(), 30)
        assert isinstance(failed, JobFailed) and failed.message == "Interrupt: from the model"
        assert isinstance(await asyncio.wait_for(second.wait(), 30), JobFinished)
        await engine.close()

    asyncio.run(main())
