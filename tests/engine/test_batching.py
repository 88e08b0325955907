"""Batching across jobs in LocalEngine: same-shape jobs queued together run as one batched call,
in arrival order, each equal to its request alone; cancelling one job of a running batch ends only
that job; a failed batch is rerun job by job. Real engine threads, tiny MusicLDM."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np

from dreamsampler.engine.families import load_model
from dreamsampler.engine.jobs import JobFailed, JobFinished, JobProgress
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from tests.conftest import HeldEngine
from tests.engine.test_takes import ATOL


def _req(prompt: str = "bass", seed: int = 1, steps: int = 2, count: int = 1
         ) -> GenerationRequest:
    return GenerationRequest(prompt, seed=seed, num_inference_steps=steps, duration=0.5,
                             count=count)


def test_same_shape_jobs_batch_in_arrival_order() -> None:
    model = load_model("tiny", "cpu")
    requests = [_req("kick", 1), _req("snare", 2, count=2), _req("hat", 3, steps=3),
                _req("clap", 4)]

    async def main() -> list[Any]:
        engine = HeldEngine(model=model)
        await engine.start()
        blocked = asyncio.ensure_future(engine.hold())
        await asyncio.to_thread(engine.busy.wait, 10)
        jobs = [engine.submit(r, i + 1)[0] for i, r in enumerate(requests)]
        order: list[int] = []
        for job in jobs:
            job._terminal.add_done_callback(lambda _f, job_id=job.id: order.append(job_id))
        engine.release.set()
        await blocked
        ends = [await asyncio.wait_for(job.wait(), 30) for job in jobs]
        await engine.close()
        assert order == [1, 2, 3, 4]  # the batch of 1+2 first, then 3 (other steps), then 4
        return ends

    ends = asyncio.run(main())
    assert all(isinstance(e, JobFinished) for e in ends)
    assert [len(e.results) for e in ends] == [1, 2, 1, 1]
    assert [e.result.record.get("batch") for e in ends] == [3, 3, None, None]
    for end, request in zip(ends, requests, strict=True):
        for take, alone in zip(end.results, request.takes(), strict=True):
            np.testing.assert_allclose(take.audio, sample(model, alone).audio, rtol=0, atol=ATOL)


def test_cancelling_one_job_of_a_running_batch_keeps_the_others() -> None:
    model = load_model("tiny", "cpu")
    denoise = model.denoise
    reached, go = threading.Event(), threading.Event()
    calls = 0

    def paused(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # second step of the batch: let the test cancel job 2
            reached.set()
            go.wait(30)
        return denoise(*args, **kwargs)

    model.denoise = paused  # type: ignore[method-assign]

    async def main() -> None:
        engine = HeldEngine(model=model)
        await engine.start()
        blocked = asyncio.ensure_future(engine.hold())
        await asyncio.to_thread(engine.busy.wait, 10)
        jobs = [engine.submit(_req(seed=s, steps=3), s)[0] for s in (1, 2, 3)]
        engine.release.set()
        await blocked
        await asyncio.to_thread(reached.wait, 30)
        assert engine.status().running == 1
        assert engine.cancel(2)
        go.set()
        ends = [await asyncio.wait_for(job.wait(), 30) for job in jobs]
        assert isinstance(ends[1], JobFailed) and ends[1].cancelled
        assert isinstance(ends[0], JobFinished) and isinstance(ends[2], JobFinished)
        assert ends[0].result.record["batch"] == 3
        progress = [e.step async for e in jobs[0].events() if isinstance(e, JobProgress)]
        assert progress == [1, 2, 3]
        await engine.close()

    asyncio.run(main())


def test_a_failed_batch_is_rerun_job_by_job() -> None:
    model = load_model("tiny", "cpu")
    denoise = model.denoise

    def no_big_batches(latents: Any, *args: Any, **kwargs: Any) -> Any:
        if latents.shape[0] > 2:  # two jobs with guidance: 4 rows
            raise RuntimeError("out of memory")
        return denoise(latents, *args, **kwargs)

    model.denoise = no_big_batches  # type: ignore[method-assign]

    async def main() -> None:
        engine = HeldEngine(model=model)
        await engine.start()
        blocked = asyncio.ensure_future(engine.hold())
        await asyncio.to_thread(engine.busy.wait, 10)
        jobs = [engine.submit(_req(seed=s), s)[0] for s in (1, 2)]
        engine.release.set()
        await blocked
        ends = [await asyncio.wait_for(job.wait(), 30) for job in jobs]
        assert all(isinstance(e, JobFinished) for e in ends)
        assert all("batch" not in e.result.record for e in ends)  # type: ignore[union-attr]
        await engine.close()

    asyncio.run(main())
