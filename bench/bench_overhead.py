"""Server overhead: trigger→file time through OSC divided by the bare sampling-loop time.

For the same model, prompt, seed, steps and duration, it times
  * bare: ``sample()`` called directly (text encoding, denoising loop, VAE, vocoder);
  * OSC: a real server (same model object) on loopback; from sending ``/gen`` to receiving
    ``/done`` with the path, i.e. parsing, queueing, the same loop, the atomic WAV+JSON write.

Run:  OMP_NUM_THREADS=2 python bench/bench_overhead.py [--full] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.models import musicldm_full_size, parameter_count
from dreamsampler.client import OscClient
from dreamsampler.config import load_config
from dreamsampler.engine.families import ModelFamily, load_model
from dreamsampler.engine.jobs import LocalEngine
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from dreamsampler.server.app import start_app


def time_pairs(
    model: ModelFamily, request: GenerationRequest, repeats: int
) -> tuple[list[float], list[float]]:
    """Bare and OSC timings, interleaved so both see the same machine load."""
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(None, {"model.id": model.model_id, "osc.port": 0,
                                    "output.dir": f"{tmp}/out", "input_dirs": [tmp],
                                    "limits.max_duration": 60.0})
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        engine = LocalEngine(model=model, queue_size=4)
        app = asyncio.run_coroutine_threadsafe(start_app(config, engine), loop).result(120)
        args = [request.prompt, "seed", request.seed, "steps", request.num_inference_steps,
                "duration", request.duration, "guidance", request.guidance_scale]
        bare: list[float] = []
        osc: list[float] = []
        with OscClient("127.0.0.1", app.osc.port) as client:
            sample(model, request)  # warm-up both paths
            client.request("/gen", *args, timeout=600)
            for _ in range(repeats):
                t0 = time.perf_counter()
                sample(model, request)
                bare.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                reply = client.request("/gen", *args, timeout=600)[-1]
                osc.append(time.perf_counter() - t0)
                assert reply.address == "/done", reply
        asyncio.run_coroutine_threadsafe(app.close(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    return bare, osc


def report(name: str, model: ModelFamily, request: GenerationRequest, repeats: int) -> None:
    bare_runs, osc_runs = time_pairs(model, request, repeats)
    bare, osc = statistics.median(bare_runs), statistics.median(osc_runs)
    params = parameter_count(model.components["unet"]) / 1e6
    print(f"{name:<28} unet {params:6.1f} M  steps {request.num_inference_steps:3d}  "
          f"clip {request.duration:5.2f} s  bare {bare * 1000:9.1f} ms  "
          f"OSC→file {osc * 1000:9.1f} ms  ratio {osc / bare:.3f} "
          f"(+{(osc - bare) * 1000:.1f} ms)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--full", action="store_true",
                        help="also the full-size MusicLDM-shaped model (minutes on a CPU)")
    parser.add_argument("--full-steps", type=int, default=2)
    args = parser.parse_args()
    import os

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu, "
          f"median of {args.repeats}, load average {os.getloadavg()[0]:.1f}")
    tiny = load_model("tiny", "cpu")
    for steps, duration in ((4, 1.0), (25, 10.0)):
        report("tiny (MusicLDM classes)", tiny,
               GenerationRequest("warm analog bass", seed=7, num_inference_steps=steps,
                                 duration=duration), args.repeats)
    if args.full:
        full = musicldm_full_size()
        report("MusicLDM full-size, random", full,
               GenerationRequest("warm analog bass", seed=7, num_inference_steps=args.full_steps,
                                 duration=10.24), max(1, min(args.repeats, 2)))


if __name__ == "__main__":
    main()
