"""LocalEngine's async job interface, with real threads."""

from __future__ import annotations

import asyncio

import pytest

from dreamsampler.engine.concepts import ConceptError
from dreamsampler.engine.families import load_model
from dreamsampler.engine.jobs import (
    EngineClosed,
    JobFailed,
    JobFinished,
    JobProgress,
    JobStarted,
    LocalEngine,
    QueueFull,
)
from dreamsampler.engine.request import GenerationRequest
from tests.conftest import HeldEngine


def _req(steps: int = 3) -> GenerationRequest:
    return GenerationRequest("bass", seed=1, num_inference_steps=steps, duration=0.5)


def test_event_order_positions_cancel_and_queue_bound() -> None:
    async def main() -> None:
        engine = HeldEngine("tiny", "cpu", queue_size=2)
        await engine.start()
        blocked = asyncio.ensure_future(engine.hold())
        await asyncio.to_thread(engine.busy.wait, 10)
        first, pos1 = engine.submit(_req(), 1)
        second, pos2 = engine.submit(_req(), 2)
        assert (pos1, pos2) == (0, 1)
        with pytest.raises(QueueFull):
            engine.submit(_req(), 3)
        assert engine.cancel(2) and not engine.cancel(99)
        engine.release.set()
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


def test_close_fails_every_pending_job_and_operation_with_its_reason(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        engine = HeldEngine("tiny", "cpu", concepts_dir=tmp_path)
        await engine.start()
        held = asyncio.ensure_future(engine.hold())
        await asyncio.to_thread(engine.busy.wait, 10)
        job, _ = engine.submit(_req(), 1)
        load = asyncio.ensure_future(engine.load_concept("riff"))
        unload = asyncio.ensure_future(engine.unload_concept("riff"))
        barrier = asyncio.ensure_future(engine.barrier())
        await asyncio.sleep(0)  # let the three operations reach the queue
        assert engine.status().queued == 1
        closing = asyncio.ensure_future(engine.close("model swapped"))
        for pending in (load, unload, barrier):
            with pytest.raises(EngineClosed, match="model swapped"):
                await pending
        end = await job.wait()
        assert isinstance(end, JobFailed) and end.cancelled and end.message == "model swapped"
        engine.release.set()
        await closing
        await held
        with pytest.raises(EngineClosed, match="model swapped"):
            await engine.barrier()
        with pytest.raises(QueueFull, match="model swapped"):
            engine.submit(_req(), 2)

    asyncio.run(main())


def test_operations_wait_their_turn_and_concept_errors_come_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        engine = HeldEngine("tiny", "cpu", concepts_dir=tmp_path)
        await engine.start()
        held = asyncio.ensure_future(engine.hold())
        await asyncio.to_thread(engine.busy.wait, 10)
        job, _ = engine.submit(_req(), 1)
        barrier = asyncio.ensure_future(engine.barrier())
        load = asyncio.ensure_future(engine.load_concept("ghost"))
        await asyncio.sleep(0)
        assert not barrier.done() and not job.done
        engine.release.set()
        await barrier
        assert job.done, "the barrier resolves only after the job before it ended"
        with pytest.raises(ConceptError, match="no such concept folder"):
            await load
        assert await engine.available_concepts() == []
        await held
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
        # one job per call: batched together, both jobs would share the first call's failure
        engine = LocalEngine(model=model, max_batch=1)
        await engine.start()
        first, _ = engine.submit(_req(), 1)
        second, _ = engine.submit(_req(), 2)
        failed = await asyncio.wait_for(first.wait(), 30)
        assert isinstance(failed, JobFailed) and failed.message == "Interrupt: from the model"
        assert isinstance(await asyncio.wait_for(second.wait(), 30), JobFinished)
        await engine.close()

    asyncio.run(main())
