"""The server over real UDP with its model in a supervised engine process (engine.kind: process).

A crash and a wedge of the engine process end the job with /fail naming the reason; /status
counts the restart and the next /gen is delivered. Faults come from inside the engine process
(:mod:`tests.engine.faults`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dreamsampler.engine.supervised import SupervisedEngine
from dreamsampler.server.app import make_engine, start_app
from dreamsampler.server.contract import REPLIES
from tests.conftest import RunningServer, make_config

HOOK = "tests.engine.faults:on_step"


@pytest.fixture
def process_server(tmp_path: Path) -> Iterator[RunningServer]:
    config = make_config(tmp_path, **{"engine.kind": "process", "engine.watchdog_s": 1.0})
    assert isinstance(make_engine(config), SupervisedEngine)
    engine = SupervisedEngine(config.model.id, config.model.device, watchdog_s=1.0,
                              concepts_dir=config.concepts_dir, step_hook=HOOK)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        app = asyncio.run_coroutine_threadsafe(start_app(config, engine), loop).result(60)
        yield RunningServer(app, loop, config.output.dir, config.input_dirs[0])
        asyncio.run_coroutine_threadsafe(app.close(), loop).result(60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _status(c: object) -> dict[str, object]:
    args = c.request("/status", timeout=5)[-1].args  # type: ignore[attr-defined]
    names = [a.name for a in REPLIES["/status.reply"].args]
    return dict(zip(names, args, strict=True))


def _restarts(c: object) -> int:
    return _status(c)["engine_restarts"]  # type: ignore[return-value]


def test_crash_and_wedge_fail_the_job_and_the_server_serves_on(
        process_server: RunningServer) -> None:
    with process_server.client() as c:
        assert c.request("/gen", "bass", "steps", 2)[-1].address == "/done"
        crashed = c.request("/gen", "exit", "steps", 2)[-1]
        assert crashed.address == "/fail" and crashed.args[0] == "/gen"
        assert "engine crashed: process exit code 3" in crashed.args[1]
        assert _restarts(c) == 1
        wedged = c.request("/gen", "hang", "steps", 2)[-1]
        assert wedged.address == "/fail" and "engine wedged" in wedged.args[1]
        assert _restarts(c) == 2
        assert c.request("/gen", "bass", "steps", 2)[-1].address == "/done"
        assert _status(c)["engine_state"] == "ready"
