"""The server on RayEngine: a real local Ray cluster (127.0.0.1) with two tiny-model replicas,
driven over real UDP by two OSC clients.

One test, one cluster (starting Ray costs most of the time): concurrent /gen from two clients with
/progress, /cancel that frees the replica, two LoRA concepts routed to the replica that holds each
(an LRU of one concept per replica), and a replica killed mid-job (SIGKILL) whose job ends in
/fail while the next job succeeds; issue 21: ``count 2`` takes (plain and with a LoRA concept),
four queued same-shape jobs run as one ``@serve.batch``, a one-LoRA ``loras`` blend. Clips are
compared with :func:`sample` on the same tiny weights in this process.
Skipped only when Ray Serve is not installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile as sf

from dreamsampler.client import OscClient, Reply
from dreamsampler.engine.concepts import ConceptManager
from dreamsampler.engine.families import load_model
from dreamsampler.engine.jobs import EngineClosed, JobFailed, JobProgress
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from dreamsampler.engine.training.trainer import TrainSettings, train
from dreamsampler.server.contract import REPLIES
from tests.conftest import make_config, run_server, write_pluck
from tests.engine import toy_world as toy

if TYPE_CHECKING:
    from dreamsampler.engine.ray_engine import RayEngine

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None,
    reason="needs the 'ray' extra (ray[serve])",
)

PROMPT = "a plucked tone"
FAST = {"steps": 4, "checkpoint_every": 0, "lr": 1e-2, "grad_accum": 1}


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


def _stop_ray() -> None:
    import ray
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()


async def _close_with_work(engine: RayEngine) -> list:
    jobs = [engine.submit(GenerationRequest(PROMPT, num_inference_steps=1000, duration=0.5),
                          job_id)[0] for job_id in (50, 51, 52)]
    barrier = asyncio.ensure_future(engine.barrier())
    async for event in jobs[0].events():
        if isinstance(event, JobProgress):
            break
    await engine.close("test over")
    with pytest.raises(EngineClosed, match="test over"):
        await barrier
    return [await job.wait() for job in jobs]


def _gen(client: OscClient, job_id: int, *options: object) -> None:
    client.send("/gen", PROMPT, "seed", 7, "id", job_id, *options)


def _end(client: OscClient, job_id: int, timeout: float = 60.0, address: str = "/gen") -> Reply:
    """The /done or /fail that ends job ``job_id`` of a /gen (or ``address``)."""
    def ended(r: Reply) -> bool:
        return r.address in ("/done", "/fail") and r.args[0] == address and job_id in r.args[1:]

    seen = [r for r in client.received if ended(r)]
    return seen[-1] if seen else client.wait_for(ended, timeout)[-1]


def _clip(done: Reply) -> tuple[np.ndarray, str]:
    """The written clip (channels, samples) and the replica that made it."""
    audio, record = _clip_and_record(done)
    return audio, record["replica"]


def _clip_and_record(done: Reply) -> tuple[np.ndarray, dict]:
    """The written clip (channels, samples) and its sidecar record."""
    assert done.address == "/done", done
    path = Path(done.args[2])
    record = json.loads(path.with_suffix(".json").read_text())
    return sf.read(path, dtype="float32", always_2d=True)[0].T, record


TAKES_ATOL = 1e-5
"""A take of a batched call vs the same seed alone (batch size changes the float kernels)."""


def _check_takes(done: Reply, expected: list[np.ndarray]) -> None:
    """``done`` lists one clip per take, each close to its seed run alone, from one replica."""
    assert done.address == "/done", done
    paths = [Path(p) for p in done.args[2:2 + len(expected)]]
    assert len({p.name for p in paths}) == len(expected), done
    replicas = set()
    for k, (path, want) in enumerate(zip(paths, expected, strict=True), start=1):
        audio = sf.read(path, dtype="float32", always_2d=True)[0].T
        record = json.loads(path.with_suffix(".json").read_text())
        assert record["seed"] == 7 + k - 1, record
        replicas.add(record["replica"])
        np.testing.assert_allclose(audio, want, rtol=0, atol=TAKES_ATOL)
    assert len(replicas) == 1, replicas


def _together(ends: list[Reply], expected: np.ndarray) -> None:
    """Jobs sent together ran on different replicas (each exactly as here) or as one batch
    on one replica (to :data:`TAKES_ATOL`)."""
    done = [_clip_and_record(end) for end in ends]
    if len({record["replica"] for _, record in done}) == len(ends):
        for audio, _ in done:
            np.testing.assert_array_equal(audio, expected)
        return
    for audio, record in done:
        assert record["batch"] == len(ends), record
        np.testing.assert_allclose(audio, expected, rtol=0, atol=TAKES_ATOL)


def _check_stems(done: Reply, source: Path) -> None:
    from dreamsampler.engine.stems import SOURCES, separate, tiny_htdemucs

    assert done.address == "/done", done
    folder = Path(done.args[2])
    mix, rate = sf.read(source, dtype="float32", always_2d=True)
    expected = separate(tiny_htdemucs(), mix.T.copy(), rate)
    for name in SOURCES:
        stem = sf.read(folder / f"pluck.{name}.wav", dtype="float32", always_2d=True)[0].T
        np.testing.assert_allclose(stem, expected[name], atol=1e-6)


@pytest.fixture(scope="module")
def lora_concepts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("concepts")
    clips = toy.concept_clips(2)
    for method, name in (("lora", "bright"), ("lora", "dark"), ("ti", "glass"),
                         ("dreambooth", "twin")):
        train(load_model("tiny", "cpu"),
              TrainSettings(method=method, name=name, **FAST),  # type: ignore[arg-type]
              clips, root)
    return root


def test_ray_engine_over_osc(tmp_path: Path, lora_concepts: Path) -> None:
    reference = load_model("tiny", "cpu")
    manager = ConceptManager(reference, lora_concepts)
    for name in ("bright", "dark", "glass", "twin"):
        manager.load(name)
    expected = {
        c: sample(reference, GenerationRequest(PROMPT, seed=7, num_inference_steps=3,
                                               duration=0.5, concept=c)).audio.clip(-1, 1)
        for c in (None, "bright", "dark", "twin")
    }
    # seed 8: the second take of a count 2 job (seeds 7, 8), with and without a LoRA concept
    second = {c: sample(reference, GenerationRequest(PROMPT, seed=8, num_inference_steps=3,
                                                     duration=0.5, concept=c)).audio.clip(-1, 1)
              for c in (None, "bright")}
    seeds = {seed: sample(reference, GenerationRequest(
        PROMPT, seed=seed, num_inference_steps=3, duration=0.5, concept="bright",
    )).audio.clip(-1, 1) for seed in (9, 10)}
    seeds.update({7: expected["bright"], 8: second["bright"]})
    blend = sample(reference, GenerationRequest(PROMPT, seed=7, num_inference_steps=3,
                                                duration=0.5, loras=(("bright", 0.5),)))
    expected["glass"] = sample(reference, GenerationRequest(
        "a <glass> tone", seed=7, num_inference_steps=3, duration=0.5)).audio.clip(-1, 1)
    assert not np.array_equal(expected["bright"], expected["dark"])
    assert not np.array_equal(blend.audio.clip(-1, 1), expected[None])
    config = make_config(tmp_path, **{
        "engine.kind": "ray", "engine.replicas": 2, "engine.cpus_per_replica": 0.5,
        "engine.concepts_per_replica": 1, "concepts_dir": str(lora_concepts),
        "output.subtype": "FLOAT", "output.sample_rate": "native",
        "defaults.num_inference_steps": 3, "defaults.duration": 0.5, "limits.max_steps": 1000,
        "stems.model": "tiny",
    })
    source = write_pluck(config.input_dirs[0] / "pluck.wav")
    transferred = sample(reference, GenerationRequest(
        PROMPT, seed=7, num_inference_steps=3, duration=None, input_path=source, strength=0.5,
    )).audio.clip(-1, 1)  # no duration: as long as the 1.5 s input, as /transfer without one
    raylets_before = _raylet_pids()
    try:
        for server in run_server(config, start_timeout=240):
            import ray

            assert ray.util.get_node_ip_address() == "127.0.0.1"
            engine = server.app.service.engine
            with server.client() as a, server.client() as b:
                a.request("/notify", 1)
                # Two clients at once: both replicas work, or one runs both as a batch
                # (@serve.batch: the router may send both to one replica); every step is reported.
                _gen(a, 1)
                _gen(b, 2)
                _together([_end(a, 1), _end(b, 2)], expected[None])
                fractions = [r.args[1] for r in a.received if r.address == "/progress"
                             and r.args[0] == 1]
                assert fractions == pytest.approx([1 / 3, 2 / 3, 1.0])

                # count 2 (issue 21): one job, two takes from one batched call on a replica, each
                # equal to its seed run alone here (batch of 2 vs 1: float tolerance).
                _gen(a, 6, "count", 2)
                _check_takes(_end(a, 6), [expected[None], second[None]])

                # Style transfer: the front end reads the input file and ships its samples.
                a.send("/transfer", "pluck.wav", PROMPT, "seed", 7, "strength", 0.5, "id", 9)
                audio, record = _clip_and_record(_end(a, 9, address="/transfer"))
                np.testing.assert_array_equal(audio, transferred)
                assert record["input_path"] == str(source)

                # /separate (issue 19): the front end ships the input's samples; the replica's
                # stems stage separates them as Demucs does here.
                a.send("/separate", "pluck.wav", "id", 60)
                _check_stems(_end(a, 60, address="/separate"), source)

                # /cancel mid-job stops the replica between steps: afterwards two jobs sent together
                # run on two replicas (a replica still busy would take neither).
                _gen(a, 3, "steps", 1000)
                a.wait_for(lambda r: r.address == "/progress" and r.args[0] == 3)
                assert a.request("/cancel", 3, timeout=10)[-1].args == ("/cancel", 3)
                assert _end(a, 3).args[1:] == ("cancelled", 3)
                _gen(a, 4)
                _gen(b, 5)
                _together([_end(a, 4), _end(b, 5)], expected[None])

                # Two LoRA concepts settle one per replica; later requests go to their holder.
                for name in ("bright", "dark"):
                    done = a.request("/concept/load", name)[-1]
                    assert done.args[:3] == ("/concept/load", name, "lora"), done
                ran_on: dict[str, str] = {}
                for round_ in range(3):
                    _gen(a, 10 + round_, "concept", "bright")
                    _gen(b, 20 + round_, "concept", "dark")
                    for client, job_id, name in ((a, 10 + round_, "bright"),
                                                 (b, 20 + round_, "dark")):
                        audio, ran_on[name] = _clip(_end(client, job_id))
                        np.testing.assert_array_equal(audio, expected[name])
                replicas = engine.status().extra["replicas"]
                holders = {name: [rid for rid, r in replicas.items() if name in r["concepts"]]
                           for name in ("bright", "dark")}
                assert holders == {"bright": [ran_on["bright"]], "dark": [ran_on["dark"]]}
                assert ran_on["bright"] != ran_on["dark"]
                status = a.request("/status", timeout=5)[-1]
                names = [x.name for x in REPLIES["/status.reply"].args]
                device = status.args[names.index("device")]
                assert device.startswith("ray:cpu x2 [")
                for name in ("bright", "dark"):
                    assert f"{ran_on[name]} {name} idle" in device, device
                _gen(a, 13, "concept", "bright", "count", 2)  # the concept holds for every take
                _check_takes(_end(a, 13), [expected["bright"], second["bright"]])
                # A loras blend of one LoRA routes as its concept; two concepts get /fail.
                _gen(a, 14, "lora", "bright", 0.5)
                np.testing.assert_array_equal(_clip(_end(a, 14))[0], blend.audio.clip(-1, 1))
                _gen(a, 15, "lora", "bright", 0.5, "lora", "dark", 0.5)
                assert "one concept per request" in _end(a, 15).args[1]

                # Jobs of one shape queued on a busy replica run as one batch (@serve.batch): a
                # long job keeps the replica holding "bright" busy, four "bright" jobs queue there
                # (routed to its holder), the long job is cancelled; every reply is its own
                # seed's clip, and they ran batched.
                _gen(a, 80, "steps", 1000, "concept", "bright")
                a.wait_for(lambda r: r.address == "/progress" and r.args[0] == 80)
                for job_id, seed in zip((82, 83, 84, 85), (7, 8, 9, 10), strict=True):
                    b.send("/gen", PROMPT, "seed", seed, "concept", "bright", "id", job_id)
                b.request("/status", timeout=10)  # answered after the four jobs were submitted
                assert a.request("/cancel", 80, timeout=10)[-1].args == ("/cancel", 80)
                assert _end(a, 80).args[1:] == ("cancelled", 80)
                batches = []
                for job_id, seed in zip((82, 83, 84, 85), (7, 8, 9, 10), strict=True):
                    audio, record = _clip_and_record(_end(b, job_id))
                    assert record["seed"] == seed
                    np.testing.assert_allclose(audio, seeds[seed], rtol=0, atol=TAKES_ATOL)
                    batches.append(record["batch"])
                assert max(batches) >= 2, batches

                # TI (routed by its token in the prompt) and DreamBooth work too; replicas evict
                # the LoRA concepts (LRU of one) to make room. One concept per request.
                for name in ("glass", "twin"):
                    a.request("/concept/load", name)
                a.send("/gen", "a <glass> tone", "seed", 7, "id", 40)
                _gen(b, 41, "concept", "twin")
                np.testing.assert_array_equal(_clip(_end(a, 40))[0], expected["glass"])
                np.testing.assert_array_equal(_clip(_end(b, 41))[0], expected["twin"])
                a.send("/gen", "a <glass> tone", "seed", 7, "concept", "bright", "id", 42)
                assert "one concept per request" in _end(a, 42).args[1]

                # A replica killed mid-job: /fail names the replica; the next job succeeds and
                # /status keeps answering.
                _gen(a, 30, "steps", 1000)
                a.wait_for(lambda r: r.address == "/progress" and r.args[0] == 30)
                (victim,) = [r for r in engine.status().extra["replicas"].values()
                             if r["running"] == 30]
                os.kill(victim["pid"], signal.SIGKILL)
                failed = _end(a, 30)
                assert failed.address == "/fail" and "replica" in failed.args[1], failed
                assert "Died" in failed.args[1], failed
                assert b.request("/status", timeout=5)[-1].address == "/status.reply"
                for job_id in (31, 32):
                    _gen(b, job_id)
                    np.testing.assert_array_equal(_clip(_end(b, job_id))[0], expected[None])

            # Closing fails the running and queued jobs and a pending barrier with the reason.
            ends = server.call(_close_with_work(engine))
            assert all(isinstance(e, JobFailed) and e.message == "test over" for e in ends)
    finally:  # a failed check must not leave the cluster running for later tests
        _stop_ray()
    assert not (_raylet_pids() - raylets_before), "a raylet outlived the server"


def test_replica_groups_jobs_by_shape() -> None:
    """The replica's split of a @serve.batch (no cluster): LocalEngine's rule (batch_key and the
    concept key), at most MAX_BATCH_ROWS takes, a separation alone, first-come order."""
    from dreamsampler.engine.ray_engine import MAX_BATCH_ROWS, _groups, _Pending
    from dreamsampler.engine.stems import SeparationRequest

    def job(key: str = "", **fields: object) -> _Pending:
        return _Pending(GenerationRequest(**{"prompt": PROMPT, "duration": 0.5,
                                             "num_inference_steps": 3, **fields}), key)

    a, b = job(seed=1), job(seed=2, prompt="another prompt", count=3)
    steps = job(num_inference_steps=4)
    bright, dark = job("bright@1", concept="bright"), job("dark@1", concept="dark")
    bright2 = job("bright@1", concept="bright", seed=5)
    sep = _Pending(SeparationRequest(input_path=Path("in.wav")), "")
    big = job(count=MAX_BATCH_ROWS - 3)
    groups = _groups([a, steps, bright, b, sep, dark, bright2, big])
    assert groups == [[a, b], [steps], [bright, bright2], [sep], [dark], [big]]
