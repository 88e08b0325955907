"""RayEngine on a real local Ray cluster (127.0.0.1) with two tiny-model Serve replicas.

One test, one cluster (starting Ray costs most of the time): concurrent jobs with progress, cancel
that frees the replica, LoRA concepts routed to the replica that holds them (LRU of one concept per
replica), and a replica killed mid-job (SIGKILL) failing its job while the next job succeeds. Audio
is compared with :func:`sample` on the same tiny weights in this process. Skipped only when Ray
Serve is not installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from dreamsampler.engine.concepts import ConceptManager, ConceptNotLoadedError
from dreamsampler.engine.families import load_model
from dreamsampler.engine.jobs import Job, JobFailed, JobFinished, JobProgress, JobStarted
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from dreamsampler.engine.training.trainer import TrainSettings, train
from tests.engine import toy_world as toy

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None,
    reason="needs the 'ray' extra (ray[serve])",
)

FAST = {"steps": 4, "checkpoint_every": 0, "lr": 1e-2, "grad_accum": 1}


def _req(seed: int, concept: str | None = None, steps: int = 3) -> GenerationRequest:
    return GenerationRequest("a plucked tone", seed=seed, num_inference_steps=steps,
                             duration=0.5, concept=concept)


def _raylet_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "raylet":
                    pids.add(int(entry.name))
            except OSError:
                continue
    return pids


async def _events(job: Job) -> list:
    return [e async for e in job.events()]


@pytest.fixture(scope="module")
def lora_concepts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("concepts")
    clips = toy.concept_clips(2)
    for name in ("bright", "dark"):
        train(load_model("tiny", "cpu"),
              TrainSettings(method="lora", name=name, **FAST),  # type: ignore[arg-type]
              clips, root)
    return root


def test_ray_engine_jobs_progress_cancel_routing_and_replica_death(lora_concepts: Path) -> None:
    from dreamsampler.engine.ray_engine import RayEngine, RaySettings

    reference = load_model("tiny", "cpu")
    manager = ConceptManager(reference, lora_concepts)
    manager.load("bright")
    manager.load("dark")
    expected = {c: sample(reference, _req(7, c)).audio for c in (None, "bright", "dark")}
    assert not np.array_equal(expected["bright"], expected["dark"])
    raylets_before = _raylet_pids()

    async def main() -> None:
        engine = RayEngine(
            "tiny", "cpu", concepts_dir=lora_concepts,
            settings=RaySettings(min_replicas=2, cpus_per_replica=0.5, concepts_per_replica=1,
                                 app_name="ds-test"),
        )
        await engine.start()
        try:
            await _scenario(engine)
        finally:
            await engine.close()

    async def _scenario(engine: RayEngine) -> None:
        # Two concurrent jobs: each streams start, every step, its clip; both replicas work.
        jobs = [engine.submit(_req(7), job_id)[0] for job_id in (1, 2)]
        runs = await asyncio.gather(*(_events(j) for j in jobs))
        for events in runs:
            assert isinstance(events[0], JobStarted)
            assert [e.step for e in events if isinstance(e, JobProgress)] == [1, 2, 3]
            assert isinstance(events[-1], JobFinished)
            np.testing.assert_array_equal(events[-1].result.audio, expected[None])
        assert {r[-1].result.record["replica"] for r in runs} == set(
            engine.status().extra["replicas"]
        ) and len(engine.status().extra["replicas"]) == 2

        # Cancel mid-job: the replica stops between steps and takes the next job at once, so two
        # jobs sent together afterwards run on two replicas (a busy replica would take neither).
        long, _ = engine.submit(_req(1, steps=1000), 3)
        async for event in long.events():
            if isinstance(event, JobProgress):
                assert engine.cancel(3)
                break
        end = await long.wait()
        assert isinstance(end, JobFailed) and end.cancelled
        pair = [engine.submit(_req(7), job_id)[0] for job_id in (4, 5)]
        ends = await asyncio.gather(*(j.wait() for j in pair))
        assert all(isinstance(e, JobFinished) for e in ends)
        assert len({e.result.record["replica"] for e in ends}) == 2  # type: ignore[union-attr]

        # Concepts: unknown → a clear failure; two LoRA concepts end up one per replica (LRU of
        # one), and later requests go to the replica that holds theirs.
        refused, _ = engine.submit(_req(7, "bright"), 6)
        end = await refused.wait()
        assert isinstance(end, JobFailed) and "'bright'" in end.message
        assert "not loaded" in end.message
        for name in ("bright", "dark"):
            info = await engine.load_concept(name)
            assert (info.name, info.method, info.loaded) == (name, "lora", True)
        assert [c.name for c in engine.list_concepts()] == ["bright", "dark"]
        job_id = 10
        ran_on: dict[str, str] = {}
        for _round in range(3):
            pair = []
            for name in ("bright", "dark"):
                pair.append((name, engine.submit(_req(7, name), job_id)[0]))
                job_id += 1
            for name, job in pair:
                end = await job.wait()
                assert isinstance(end, JobFinished), end
                np.testing.assert_array_equal(end.result.audio, expected[name])
                ran_on[name] = end.result.record["replica"]
        replicas = engine.status().extra["replicas"]
        holders = {name: [rid for rid, r in replicas.items() if name in r["concepts"]]
                   for name in ("bright", "dark")}
        assert len(holders["bright"]) == 1 and len(holders["dark"]) == 1
        assert holders["bright"] != holders["dark"]
        assert ran_on == {"bright": holders["bright"][0], "dark": holders["dark"][0]}
        await engine.unload_concept("dark")
        with pytest.raises(ConceptNotLoadedError):
            await engine.unload_concept("dark")
        await engine.barrier()

        # A replica killed mid-job: the job fails naming the replica; Serve replaces it and
        # the next jobs succeed.
        doomed, _ = engine.submit(_req(2, steps=1000), 30)
        async for event in doomed.events():
            if isinstance(event, JobProgress):
                break
        (victim,) = [r for r in engine.status().extra["replicas"].values() if r["running"] == 30]
        os.kill(victim["pid"], signal.SIGKILL)
        end = await doomed.wait()
        assert isinstance(end, JobFailed) and not end.cancelled
        assert "replica" in end.message and "Died" in end.message, end.message
        for job_id in (31, 32):
            end = await engine.submit(_req(7), job_id)[0].wait()
            assert isinstance(end, JobFinished), end
            np.testing.assert_array_equal(end.result.audio, expected[None])

    asyncio.run(main())
    assert not (_raylet_pids() - raylets_before), "a raylet outlived the engine"
