"""Fault injection for the supervised engine's tests, run inside the engine process.

:class:`~dreamsampler.engine.supervised.SupervisedEngine` calls :func:`on_step` after every
denoising step when a test passes ``step_hook="tests.engine.faults:on_step"``; the prompt picks
the fault. Nothing here is imported by the package itself.
"""

from __future__ import annotations

import os
import threading

from dreamsampler.engine.request import GenerationRequest


class Interrupt(BaseException):
    """A ``BaseException`` that is not an ``Exception`` (like ``KeyboardInterrupt``)."""


def on_step(step: int, total: int, request: GenerationRequest) -> None:
    """Misbehave at the first step according to ``request.prompt``.

    ``hang``: block forever (a wedged kernel); ``exit``: ``os._exit(3)`` (a crash);
    ``cuda error``: raise the RuntimeError CUDA raises after an illegal memory access;
    ``interrupt``: raise a BaseException. Other prompts run normally.
    """
    if step != 1:
        return
    if request.prompt == "hang":
        threading.Event().wait()
    elif request.prompt == "exit":
        os._exit(3)
    elif request.prompt == "cuda error":
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    elif request.prompt == "interrupt":
        raise Interrupt("stop")
