"""GPU benchmark suite: one command, one table per family, on full-size random-weight models.

For each family (full-size architectures from public configs, random weights, built in code:
:mod:`bench.models`, :mod:`bench.bench_stable_audio`) it prints:

* **bare**: trigger → audio through :func:`~dreamsampler.engine.sampler.sample` (text encoding,
  the loop at the family's default steps, decode) for a ``--seconds`` clip, and **steps/s** of the
  denoising loop alone (from the step callbacks' time stamps);
* **server**: trigger → file through a real server on loopback (OSC ``/gen`` → ``/done``, the
  WAV and sidecar written), same model object, and the ``/status`` round trip p50/p99 measured by
  a second client while a ``count 4`` job runs;
* **count 4 vs 4 jobs**: one batched call of 4 takes (:func:`sample_takes`) against 4 single
  calls one after the other: seconds and the throughput ratio;
* **peak memory** (CUDA: ``torch.cuda.max_memory_allocated`` per measurement; CPU: n/a);
* **half precision**: the bare latency again with the denoiser in float16 (CUDA) or bfloat16
  (CPU), text encoders, VAE and vocoder in float32 as the engine runs them.

Default steps: MusicLDM 200 and Stable Audio Open 1.0 200 (their pipelines' defaults), SA3 8
(the distilled models). Budget: on one H100 the whole run should take under 5 minutes (model
building on the CPU included); ``--device cpu`` with ``--steps``, ``--seconds`` and ``--families``
gives a reduced configuration for machines without a GPU.

    python bench/gpu_suite.py                      # CUDA, every family, 10 s clips
    OMP_NUM_THREADS=2 python bench/gpu_suite.py --device cpu --threads 2 --steps 2 \\
        --seconds 2 --families musicldm,sa3-small   # CPU, reduced

Figures are printed, never asserted. Weights are random: the audio is noise; timing only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamsampler.client import OscClient
from dreamsampler.config import load_config
from dreamsampler.engine.families import ModelFamily, load_model
from dreamsampler.engine.jobs import LocalEngine
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample, sample_takes
from dreamsampler.server.app import start_app

#: family → (builder on a device, default steps, guidance)
FAMILIES: dict[str, tuple[Callable[[str], ModelFamily], int, float]] = {}


def _on(model: ModelFamily, device: str) -> ModelFamily:
    """The same components as a family adapter on ``device`` (moves the modules)."""
    return type(model)(model.model_id, model.components, torch.device(device), torch.float32)


def _musicldm(device: str) -> ModelFamily:
    from bench.models import musicldm_full_size

    return musicldm_full_size(device)


def _stable_audio(device: str) -> ModelFamily:
    from bench.bench_stable_audio import open_full_size

    return _on(open_full_size(), device)


def _sa3_small(device: str) -> ModelFamily:
    from bench.bench_stable_audio import SA3_SMALL_DIT, sa3_like

    return _on(sa3_like(SA3_SMALL_DIT, "sa3-small-like-random"), device)


def _tiny(name: str) -> Callable[[str], ModelFamily]:
    return lambda device: load_model(name, device)


FAMILIES.update({
    "musicldm": (_musicldm, 200, 2.0),
    "stable-audio": (_stable_audio, 200, 7.0),
    "sa3-small": (_sa3_small, 8, 1.0),
    "tiny": (_tiny("tiny"), 200, 2.0),
    "tiny:sa3": (_tiny("tiny:sa3"), 8, 1.0),
})


@dataclass
class Table:
    family: str
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, what: str, value: str) -> None:
        self.rows.append((what, value))
        print(f"  {what:<44} {value}", flush=True)

    def render(self) -> str:
        width = max(len(w) for w, _ in self.rows)
        lines = [f"| {self.family} | |", "|---|---|"]
        lines += [f"| {w:<{width}} | {v} |" for w, v in self.rows]
        return "\n".join(lines)


@contextmanager
def peak_memory(device: str, out: list[float]) -> Iterator[None]:
    """Append the peak CUDA memory (GiB) of the block to ``out`` (nothing on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    yield
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        out.append(torch.cuda.max_memory_allocated() / 2**30)


def seconds_of(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def server_figures(model: ModelFamily, request: GenerationRequest, table: Table,
                   status_polls: int) -> None:
    """OSC /gen → /done for 1 and 4 takes on a real loopback server; /status round trips
    (p50/p99) from a second client while the count-4 job runs."""
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(None, {
            "model.id": model.model_id, "osc.port": 0, "output.dir": f"{tmp}/out",
            "input_dirs": [tmp], "limits.max_duration": 60.0, "limits.max_steps": 1000,
        })
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        app = asyncio.run_coroutine_threadsafe(
            start_app(config, LocalEngine(model=model, queue_size=8)), loop).result(600)
        args = [request.prompt, "seed", request.seed, "steps", request.num_inference_steps,
                "duration", request.duration, "guidance", request.guidance_scale]
        try:
            with OscClient("127.0.0.1", app.osc.port) as client, \
                    OscClient("127.0.0.1", app.osc.port) as poller:
                bare1 = seconds_of(lambda: sample(model, request))
                osc1 = seconds_of(lambda: client.request("/gen", *args, timeout=1800))
                table.add("server: OSC → file, 1 take", f"{osc1:.2f} s "
                          f"(bare {bare1:.2f} s, ratio {osc1 / bare1:.3f})")
                bare4 = seconds_of(lambda: sample_takes(model, _count(request, 4)))
                rtts: list[float] = []
                start = time.perf_counter()
                client.send("/gen", *args, "count", 4)
                for _ in range(status_polls):
                    t0 = time.perf_counter()
                    poller.request("/status", timeout=30)
                    rtts.append(time.perf_counter() - t0)
                done = client.wait_for(lambda r: r.address in ("/done", "/fail"), timeout=1800)
                osc4 = time.perf_counter() - start
                assert done[-1].address == "/done" and len(done[-1].args) == 6, done[-1]
                table.add("server: OSC → files, count 4", f"{osc4:.2f} s "
                          f"(bare {bare4:.2f} s, ratio {osc4 / bare4:.3f})")
                rtts.sort()
                p99 = rtts[min(len(rtts) - 1, int(0.99 * len(rtts)))]
                table.add(f"/status round trip during count 4 (n={len(rtts)})",
                          f"p50 {statistics.median(rtts) * 1000:.2f} ms, "
                          f"p99 {p99 * 1000:.2f} ms")
        finally:
            asyncio.run_coroutine_threadsafe(app.close(), loop).result(600)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)


def _count(request: GenerationRequest, n: int) -> GenerationRequest:
    from dataclasses import replace

    return replace(request, count=n)


def bench_family(name: str, device: str, steps: int | None, seconds: float, half: str,
                 server: bool, status_polls: int) -> Table:
    build, default_steps, guidance = FAMILIES[name]
    steps = steps or default_steps
    t0 = time.perf_counter()
    model = build(device)
    denoiser = model.components[model.denoiser_key]
    params = sum(p.numel() for p in denoiser.parameters()) / 1e6
    table = Table(f"{name} ({params:.0f} M denoiser, {steps} steps, {seconds:g} s clip, "
                  f"guidance {guidance:g}, {device})")
    print(f"{table.family}: built in {time.perf_counter() - t0:.1f} s", flush=True)
    request = GenerationRequest("warm analog bass, tape saturation", seed=7,
                                num_inference_steps=steps, duration=seconds,
                                guidance_scale=guidance)
    memory: list[float] = []
    sample(model, _count(request, 1) if steps <= 8 else
           GenerationRequest(request.prompt, num_inference_steps=2, duration=seconds,
                             guidance_scale=guidance))  # warm-up (kernels, prompt cache)
    stamps: list[float] = []
    with peak_memory(device, memory):
        bare = seconds_of(lambda: sample(model, request,
                                         on_step=lambda i, n: stamps.append(time.perf_counter())))
    one_step = GenerationRequest(request.prompt, seed=7, num_inference_steps=1,
                                 duration=seconds, guidance_scale=guidance)
    table.add("bare: trigger → audio, 1 take", f"{bare:.2f} s")
    # from the step callbacks: the loop alone (steps 2…N), no text encoding, no decode
    table.add("steps per second (loop only, 1 take)",
              f"{(len(stamps) - 1) / (stamps[-1] - stamps[0]):.2f}" if len(stamps) > 1
              else "n/a (1 step)")
    with peak_memory(device, memory):
        batched = seconds_of(lambda: sample_takes(model, _count(request, 4)))
    singles = sum(seconds_of(lambda k=k: sample(model, GenerationRequest(
        request.prompt, seed=7 + k, num_inference_steps=steps, duration=seconds,
        guidance_scale=guidance))) for k in range(4))
    table.add("count 4 (one batch) vs 4 single jobs",
              f"{batched:.2f} s vs {singles:.2f} s: throughput × {singles / batched:.2f}")
    if memory:
        table.add("peak GPU memory: 1 take / count 4", f"{memory[0]:.2f} / {memory[1]:.2f} GiB")
    else:
        table.add("peak GPU memory", "n/a (CPU)")
    if server:
        server_figures(model, request, table, status_polls)
    dtype = getattr(torch, half)
    denoiser.to(dtype)
    model.dtype = dtype
    sample(model, one_step)  # warm-up at the new dtype
    half_s = seconds_of(lambda: sample(model, request))
    table.add(f"{half} denoiser: trigger → audio, 1 take",
              f"{half_s:.2f} s (float32 {bare:.2f} s: × {bare / half_s:.2f})")
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--families", default="musicldm,stable-audio,sa3-small",
                        help=f"comma-separated, of: {', '.join(FAMILIES)}")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--steps", type=int, default=None,
                        help="denoising steps (default: each family's default)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--half", default=None, help="float16 (CUDA default) or bfloat16 "
                        "(CPU default)")
    parser.add_argument("--no-server", action="store_true", help="skip the OSC server figures")
    parser.add_argument("--status-polls", type=int, default=200)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    half = args.half or ("float16" if args.device.startswith("cuda") else "bfloat16")
    card = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
            else f"CPU, {torch.get_num_threads()} threads")
    print(f"dreamsampler GPU suite: torch {torch.__version__}, {card}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    started = time.perf_counter()
    tables = []
    for name in args.families.split(","):
        tables.append(bench_family(name.strip(), args.device, args.steps, args.seconds, half,
                                   not args.no_server, args.status_polls))
    print(f"\ntotal {time.perf_counter() - started:.0f} s on {card}\n")
    for table in tables:
        print(table.render() + "\n")


if __name__ == "__main__":
    main()
