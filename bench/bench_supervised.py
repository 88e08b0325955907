"""Supervised-engine overhead: the model in a child process against the in-thread LocalEngine.

For the same model and request, jobs alternate between a :class:`LocalEngine` (model in this
process, one worker thread) and a :class:`SupervisedEngine` (model in a child process; request
and events over pipes, the audio pickled back). Each job is timed on the event loop from
``submit()`` to its terminal event; the overhead is the difference of the medians over the
local median. As machine noise on shared cores can exceed the effect, it also prints the
per-job cost outside the sampling loop (wall time minus the sampler's own ``elapsed_s``), for
each engine: the process engine's extra dispatch cost is the difference. The event loop's
worst lateness (a 5 ms ticker running during the jobs) shows what the process engine buys:
the loop no longer shares a GIL with the denoising loop.

Run:  OMP_NUM_THREADS=1 python bench/bench_supervised.py [--jobs 5] [--steps 25]
          [--duration 10] [--full]
``--full`` adds a short full-size MusicLDM-shaped model (random weights, 2 steps, 2 s clip).
Target (issue 12): overhead <= 2 % of the job time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.models import musicldm_full_size
from dreamsampler.engine.families import load_model
from dreamsampler.engine.jobs import JobFinished, LocalEngine
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.supervised import SupervisedEngine


class Ticker:
    """Measures the event loop's worst lateness against a 5 ms sleep."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, time.perf_counter() - t0 - 0.005)

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def timed(engine: LocalEngine | SupervisedEngine, request: GenerationRequest,
                job_id: int) -> tuple[float, float, np.ndarray]:
    """Wall seconds submit→terminal event, seconds outside the sampler, the audio."""
    t0 = time.perf_counter()
    job, _ = engine.submit(request, job_id)
    end = await job.wait()
    elapsed = time.perf_counter() - t0
    assert isinstance(end, JobFinished), end
    return elapsed, elapsed - end.result.record["elapsed_s"], end.result.audio


async def compare(name: str, local: LocalEngine, remote: SupervisedEngine,
                  request: GenerationRequest, jobs: int) -> None:
    await local.start()
    await remote.start()
    try:
        await timed(local, request, 0)  # warm-up both
        await timed(remote, request, 0)
        t_local: list[float] = []
        t_remote: list[float] = []
        o_local: list[float] = []
        o_remote: list[float] = []
        lag_local = lag_remote = 0.0
        for i in range(1, jobs + 1):
            with Ticker() as tick:
                elapsed, outside, a = await timed(local, request, i)
            t_local.append(elapsed)
            o_local.append(outside)
            lag_local = max(lag_local, tick.worst)
            with Ticker() as tick:
                elapsed, outside, b = await timed(remote, request, i)
            t_remote.append(elapsed)
            o_remote.append(outside)
            lag_remote = max(lag_remote, tick.worst)
            assert np.array_equal(a, b), "the engines disagree"
        ml, mr = statistics.median(t_local), statistics.median(t_remote)
        ol, orr = statistics.median(o_local), statistics.median(o_remote)
        print(f"{name:<22} steps {request.num_inference_steps:3d} clip {request.duration:5.2f} s"
              f"  local {ml * 1000:9.1f} ms  process {mr * 1000:9.1f} ms  overhead "
              f"{(mr - ml) * 1000:+7.1f} ms = {100 * (mr - ml) / ml:+.2f} %  "
              f"(min-based {100 * (min(t_remote) - min(t_local)) / min(t_local):+.2f} %)  "
              f"loop lag max: local {lag_local * 1000:.1f} ms, process {lag_remote * 1000:.1f} ms",
              flush=True)
        sl = statistics.median(t - o for t, o in zip(t_local, o_local, strict=True))
        sr = statistics.median(t - o for t, o in zip(t_remote, o_remote, strict=True))
        print(f"{'':<22} inside the sampler (record elapsed_s): local {sl * 1000:.1f} ms, "
              f"process {sr * 1000:.1f} ms", flush=True)
        print(f"{'':<22} outside the sampler per job: local {ol * 1000:.2f} ms, process "
              f"{orr * 1000:.2f} ms -> dispatch overhead {(orr - ol) * 1000:+.2f} ms = "
              f"{100 * (orr - ol) / ml:+.3f} % of the job", flush=True)
    finally:
        await local.close()
        await remote.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--full", action="store_true", help="also a short full-size model run")
    parser.add_argument("--no-tiny", action="store_true", help="skip the tiny-model run")
    args = parser.parse_args()
    request = GenerationRequest("warm analog bass", seed=1, num_inference_steps=args.steps,
                                duration=args.duration)
    if not args.no_tiny:
        await compare("tiny", LocalEngine(model=load_model("tiny", "cpu")),
                      SupervisedEngine("tiny", "cpu"), request, args.jobs)
    if args.full:
        full = GenerationRequest("warm analog bass", seed=1, num_inference_steps=2,
                                 duration=2.0)
        await compare("musicldm full-size", LocalEngine(model=musicldm_full_size()),
                      SupervisedEngine("musicldm-full-size-random", "cpu",
                                       model_factory="bench.models:musicldm_full_size"),
                      full, max(2, args.jobs // 2))


if __name__ == "__main__":
    asyncio.run(main())
