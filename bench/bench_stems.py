"""CPU cost of the stems stage: full-size HTDemucs on a 10 s stereo clip, and its ratio to one
generation.

The separation runs the project's stems stage (:func:`dreamsampler.engine.stems.separate`:
Demucs' ``apply_model`` with ``split=True``, 7.8 s segments, overlap 0.25, ``--shifts`` random
shifts) on the htdemucs architecture with random weights
(:func:`~dreamsampler.engine.stems.full_size_htdemucs`, 42.0 M parameters; the cost does not
depend on the weights). The input is 10 s of stereo noise at 44.1 kHz.

One generation: the full-size MusicLDM-shaped model of ``bench/models.py`` (185 M UNet), a
10.24 s clip at the server's default 25 steps with guidance (batch 2). Timing 25 full steps on
one thread takes minutes, so the bench times ``sample`` with 1 and 3 steps (prompt encoding, VAE
decode and vocoder included; after a warm-up call, whose first-call costs would otherwise land
in t(1)) and extrapolates: ``t(25) = t(1) + 24 * (t(3) - t(1)) / 2``. ``--gen-seconds S``
skips that and uses ``S`` (e.g. a figure from the README).

Times are CPU seconds of this process (``time.process_time``): with one thread they are what the
work costs even when other processes share the cores (wall-clock seconds are printed too).

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_stems.py [--threads 1] [--shifts 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamsampler.engine.stems import full_size_htdemucs, segment_count, separate

RATE = 44100


def separation_seconds(seconds: float, shifts: int, repeats: int
                       ) -> tuple[list[float], list[float], int]:
    """CPU and wall seconds of ``repeats`` separations of a ``seconds`` stereo clip (after one
    warm-up on 1 s), and the segments each runs."""
    model = full_size_htdemucs()
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal((2, round(seconds * RATE)))).astype(np.float32)
    separate(model, clip[:, :RATE], RATE, shifts=0)  # warm-up
    cpu, wall = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        stems = separate(model, clip, RATE, shifts=shifts, overlap=0.25)
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
        assert all(s.shape == clip.shape for s in stems.values())
    return cpu, wall, segment_count(model, clip.shape[-1], shifts, 0.25)


def generation_seconds(steps: int) -> tuple[float, float, float]:
    """CPU seconds ``(t(1), one step, extrapolated t(steps))`` of full-size MusicLDM-shaped
    generations."""
    from bench.models import musicldm_full_size
    from dreamsampler.engine.request import GenerationRequest
    from dreamsampler.engine.sampler import sample

    model = musicldm_full_size()
    times = {}
    for n in (0, 1, 3):  # 0: the warm-up, a 1-step call
        request = GenerationRequest("a drum loop", num_inference_steps=max(n, 1),
                                    duration=10.24, guidance_scale=2.5)
        start = time.process_time()
        sample(model, request)
        times[n] = time.process_time() - start
    step = (times[3] - times[1]) / 2
    return times[1], step, times[1] + (steps - 1) * step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (s)")
    parser.add_argument("--shifts", type=int, default=1, help="Demucs shifts (default 1)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--steps", type=int, default=25, help="generation steps (default 25)")
    parser.add_argument("--gen-seconds", type=float, default=None,
                        help="seconds of one generation to compare with (skips timing it)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU")
    cpu, wall, segments = separation_seconds(args.seconds, args.shifts, args.repeats)
    sep = statistics.median(cpu)
    print(f"HTDemucs full size (42.0 M, random weights): {args.seconds:g} s stereo 44.1 kHz, "
          f"shifts {args.shifts}, overlap 0.25, {segments} segment(s) of 7.8 s: "
          f"{sep:.2f} CPU s (median of {len(cpu)}; wall {statistics.median(wall):.2f} s), "
          f"{sep / args.seconds:.3f} CPU s per second of audio")
    if args.gen_seconds is not None:
        gen = args.gen_seconds
        print(f"one generation (given): {gen:.1f} s")
    else:
        t1, step, gen = generation_seconds(args.steps)
        print(f"MusicLDM-shaped full size, 10.24 s, guidance 2.5: 1 step {t1:.1f} CPU s "
              f"(with text encoding, VAE decode, vocoder), each further step {step:.1f} CPU s "
              f"-> {args.steps} steps {gen:.1f} CPU s (extrapolated)")
    print(f"stems / generation: {sep / gen:.3f} (stems add {100 * sep / gen:.0f}% to a job)")


if __name__ == "__main__":
    main()
