"""Ray engine: per-job overhead against the local engine, and throughput with 1, 2, 4 replicas.

On one local Ray instance (127.0.0.1), with the tiny model on CPU:
  * overhead: the same short job (submit → JobFinished) on LocalEngine and on RayEngine with one
    replica, interleaved so both see the same machine load; median times, their ratio and the
    difference (request in, progress per step and the clip out through Ray's object transfer);
  * throughput: ``--jobs`` jobs submitted at once to 1, 2 and 4 replicas (one CPU thread each),
    jobs/s from the first submit to the last result; the local engine (one worker) for reference.
Figures are printed only. Replicas beyond the free cores do not help (2 cores here).

Run:  OMP_NUM_THREADS=1 python bench/bench_ray.py [--repeats 10] [--jobs 8] [--steps 10]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamsampler.engine.jobs import JobFinished, LocalEngine
from dreamsampler.engine.ray_engine import RayEngine, RaySettings
from dreamsampler.engine.request import GenerationRequest


async def one_job(engine: LocalEngine | RayEngine, request: GenerationRequest,
                  job_id: int) -> float:
    t0 = time.perf_counter()
    job, _ = engine.submit(request, job_id)
    end = await job.wait()
    assert isinstance(end, JobFinished), end
    return time.perf_counter() - t0


async def throughput(engine: LocalEngine | RayEngine, request: GenerationRequest, jobs: int,
                     first_id: int) -> float:
    t0 = time.perf_counter()
    submitted = [engine.submit(request, first_id + i)[0] for i in range(jobs)]
    ends = await asyncio.gather(*(j.wait() for j in submitted))
    assert all(isinstance(e, JobFinished) for e in ends), ends
    return jobs / (time.perf_counter() - t0)


async def main(args: argparse.Namespace) -> None:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep Ray on 127.0.0.1
    import ray

    ray.init(include_dashboard=False, num_cpus=4, log_to_driver=False, namespace="bench")
    try:
        short = GenerationRequest("a plucked tone", seed=1, num_inference_steps=3, duration=0.5)
        work = GenerationRequest("a plucked tone", seed=1, num_inference_steps=args.steps,
                                 duration=1.0)
        local = LocalEngine("tiny", "cpu", queue_size=64)
        await local.start()
        job_id = 0

        remote = RayEngine("tiny", "cpu", queue_size=64,
                           settings=RaySettings(min_replicas=1, app_name="bench-1"))
        await remote.start()
        for engine in (local, remote):  # warm-up
            await one_job(engine, short, job_id := job_id + 1)
        times: dict[str, list[float]] = {"local": [], "ray": []}
        for _ in range(args.repeats):
            times["local"].append(await one_job(local, short, job_id := job_id + 1))
            times["ray"].append(await one_job(remote, short, job_id := job_id + 1))
        lo, rt = statistics.median(times["local"]), statistics.median(times["ray"])
        print(f"per job (tiny, {short.num_inference_steps} steps, {short.duration} s clip, "
              f"median of {args.repeats}): local {lo * 1000:.1f} ms  ray {rt * 1000:.1f} ms  "
              f"ratio {rt / lo:.2f}  (+{(rt - lo) * 1000:.1f} ms)", flush=True)

        rate = await throughput(local, work, args.jobs, job_id := job_id + 1000)
        print(f"throughput ({args.jobs} jobs, {args.steps} steps, 1 s clips):", flush=True)
        print(f"  local engine     {rate:6.2f} jobs/s", flush=True)
        await local.close()
        for n in (1, 2, 4):
            if n > 1:
                remote = RayEngine("tiny", "cpu", queue_size=64, settings=RaySettings(
                    min_replicas=n, cpus_per_replica=0.5, app_name=f"bench-{n}"))
                await remote.start()
                for i in range(n):  # warm every replica
                    await throughput(remote, short, n, job_id := job_id + 1000 + i * n)
            rate = await throughput(remote, work, args.jobs, job_id := job_id + 1000)
            print(f"  ray {n} replica{'s' if n > 1 else ' '}   {rate:6.2f} jobs/s", flush=True)
            await remote.close()
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
