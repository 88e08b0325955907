"""How far takes, half precision and torch.compile move the audio, on the tiny models (CPU).

* takes: max |take k of one ``count 4`` call − seed+k alone| (float32), per family and scheduler;
* half: max |denoiser in bfloat16 / float16 − float32|, absolute and relative to the peak;
* compile (``--compile``, minutes per family on a CPU): max |Inductor-compiled − eager|.

    OMP_NUM_THREADS=1 python bench/bench_takes_precision.py [--compile]

Printed, never asserted (the tests assert looser bounds: tests/engine/test_takes.py,
tests/engine/test_precision.py).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamsampler.engine.families import load_model
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample, sample_takes

NAMES = ["tiny", "tiny:audioldm", "tiny:audioldm2", "tiny:stable-audio", "tiny:sa3"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    base = {"prompt": "warm bass", "negative_prompt": "noise", "num_inference_steps": 3,
            "duration": 1.0}
    for name in NAMES:
        model = load_model(name, "cpu")
        schedulers = ["ddim", "euler", "dpm++"] if name == "tiny" else ["ddim"]
        for scheduler in schedulers:
            takes = sample_takes(model, GenerationRequest(seed=11, count=4, scheduler=scheduler,
                                                          **base))
            diffs = [float(np.abs(t.audio - sample(model, GenerationRequest(
                seed=11 + k, scheduler=scheduler, **base)).audio).max())
                for k, t in enumerate(takes)]
            print(f"takes   {name:<18} {scheduler:<6} max |take − alone| = {max(diffs):.2e}",
                  flush=True)
        request = GenerationRequest(seed=11, **base)
        reference = sample(model, request).audio
        peak = float(np.abs(reference).max())
        for dtype in ("bfloat16", "float16"):
            half = sample(load_model(name, "cpu", dtype), request).audio
            error = float(np.abs(half - reference).max())
            print(f"half    {name:<18} {dtype:<8} max |Δ| = {error:.2e} ({error / peak:.2e} of "
                  f"peak)", flush=True)
        if args.compile:
            start = time.perf_counter()
            compiled = load_model(name, "cpu", compile=True)
            audio = sample(compiled, request).audio
            print(f"compile {name:<18} max |Δ| = {float(np.abs(audio - reference).max()):.2e} "
                  f"(first call {time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
