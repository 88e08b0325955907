"""Shared fixtures: a real dreamsampler server on a free loopback port, driven over real UDP."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

torch.set_num_threads(1)

from dreamsampler.client import OscClient  # noqa: E402
from dreamsampler.config import Config, load_config  # noqa: E402
from dreamsampler.engine.jobs import Engine, LocalEngine, _Operation  # noqa: E402
from dreamsampler.server.app import App, start_app  # noqa: E402


class HeldEngine(LocalEngine):
    """A real :class:`LocalEngine` whose worker can be held busy between jobs, deterministically.

    ``await engine.hold()`` queues an operation that sets :attr:`busy` and blocks the worker
    until :attr:`release` is set (at most 30 s), so tests can queue jobs and operations behind it
    without timing guesses. Only the hold is added; everything else is the real engine.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.busy = threading.Event()
        self.release = threading.Event()

    async def hold(self) -> None:
        await self._operate("hold")

    def _carry_out(self, op: _Operation) -> Any:
        if op.kind == "hold":
            self.busy.set()
            self.release.wait(30)
            return None
        return super()._carry_out(op)


def held_engine(config: Config) -> HeldEngine:
    """A :class:`HeldEngine` set up as the app would set up its engine from ``config``."""
    return HeldEngine(model_id=config.model.id, device=config.model.device,
                      dtype=config.model.dtype, queue_size=config.limits.queue_size,
                      concepts_dir=config.concepts_dir)


@dataclass
class RunningServer:
    """A server running on its own event loop thread."""

    app: App
    loop: asyncio.AbstractEventLoop
    output_dir: Path
    input_dir: Path

    @property
    def port(self) -> int:
        return self.app.osc.port

    def client(self) -> OscClient:
        return OscClient("127.0.0.1", self.port)

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    base = {
        "model.id": "tiny",
        "model.device": "cpu",
        "osc.port": 0,
        "oscquery.port": 0,
        "oscquery.zeroconf": False,
        "output.dir": str(tmp_path / "out"),
        "input_dirs": [str(tmp_path / "in")],
        "concepts_dir": str(tmp_path / "concepts"),
        "defaults.num_inference_steps": 4,
        "defaults.duration": 1.0,
        "limits.max_duration": 8.0,
        "live.presets_dir": str(tmp_path / "presets"),
    }
    base.update(overrides)
    (tmp_path / "in").mkdir(exist_ok=True)
    return load_config(None, base)


async def _cancel_pending() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run_server(config: Config, engine: Engine | None = None,
               start_timeout: float = 60.0) -> Iterator[RunningServer]:
    """Start the real app (engine, service, OSC) on a background event loop; stop it after.

    ``start_timeout``: seconds allowed for start-up (a Ray cluster needs more than the default).
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-server-loop", daemon=True)
    thread.start()
    try:
        app = asyncio.run_coroutine_threadsafe(start_app(config, engine), loop).result(
            start_timeout)
        yield RunningServer(app, loop, config.output.dir, config.input_dirs[0])
        if isinstance(engine, HeldEngine):
            engine.release.set()
        asyncio.run_coroutine_threadsafe(app.close(), loop).result(start_timeout)
    finally:
        asyncio.run_coroutine_threadsafe(_cancel_pending(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    """A real server with the tiny model, a temporary output folder and input folder."""
    yield from run_server(make_config(tmp_path))


@pytest.fixture
def client(server: RunningServer) -> Iterator[OscClient]:
    with server.client() as c:
        yield c


def write_pluck(path: Path, sample_rate: int = 44100, seconds: float = 1.5,
                frequency: float = 220.0) -> Path:
    """A decaying plucked tone with a few partials, written as a real WAV file."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    tone = sum(np.sin(2 * np.pi * frequency * k * t) / k for k in (1, 2, 3))
    audio = (0.5 * tone * np.exp(-3.0 * t)).astype(np.float32)
    sf.write(path, np.stack([audio, audio], axis=1), sample_rate)
    return path
