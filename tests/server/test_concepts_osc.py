"""Concept commands over real UDP: /concept/load|unload|list, the concept and lora_scale options,
/param/concept, refusals, autoload, and /status answering while a load waits for the engine."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from dreamsampler.engine.families import load_model
from dreamsampler.engine.training.trainer import TrainSettings, train
from tests.conftest import held_engine, make_config, run_server
from tests.engine import toy_world as toy


@pytest.fixture(scope="module")
def concepts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("osc-concepts")
    for method, name in (("lora", "riff"), ("ti", "glass")):
        train(load_model("tiny", "cpu"),
              TrainSettings(method=method, name=name, steps=2, grad_accum=1,  # type: ignore[arg-type]
                            checkpoint_every=0), toy.concept_clips(2), root)
    (root / "junk").mkdir()  # a folder without concept.yaml: skipped by autoload "*"
    return root


def _config(tmp_path: Path, concepts_dir: Path, **extra: object):  # type: ignore[no-untyped-def]
    return make_config(tmp_path, concepts_dir=str(concepts_dir), **extra)


def test_concept_commands(tmp_path: Path, concepts_dir: Path) -> None:
    for server in run_server(_config(tmp_path, concepts_dir)):
        with server.client() as c:
            assert c.request("/concept/list")[-1].args == ()
            cases = [
                (("/concept/load", "ghost"), "no such concept folder"),
                (("/concept/load", "../etc"), "invalid concept name"),
                (("/concept/unload", "riff"), "not loaded"),
                (("/gen", "x", "concept", "riff"), "concept 'riff' is not loaded (loaded: none)"),
                (("/param/concept", "riff"), "is not loaded"),
                (("/gen", "x", "lora_scale", "loud"), "lora_scale: expected float"),
                (("/gen", "x", "lora_scale", 9.0), "above the maximum"),
            ]
            for message, text in cases:
                reply = c.request(*message, timeout=10)[-1]
                assert reply.address == "/fail" and text in reply.args[1], (message, reply)
                assert reply.args[0] == message[0]
            assert c.request("/concept/load", "riff")[-1].args == ("/concept/load", "riff", "lora",
                                                                   "loaded")
            assert c.request("/concept/load", "glass")[-1].args == ("/concept/load", "glass", "ti",
                                                                    "loaded")
            reply = c.request("/concept/load", "riff")[-1]  # idempotent: says so, changes nothing
            assert reply.args == ("/concept/load", "riff", "lora", "already loaded")
            assert c.request("/concept/list")[-1].args == ("riff", "glass")
            assert c.request("/concept/available")[-1].args == (
                "glass", "ti", "musicldm", 1, "riff", "lora", "musicldm", 1)  # the model family

            done = c.request("/gen", "a <glass> riff", "concept", "riff", "lora_scale", 0.5,
                             timeout=30)[-1]
            assert done.address == "/done", done
            record = json.loads(Path(done.args[2]).with_suffix(".json").read_text())
            assert record["concept"] == "riff" and record["lora_scale"] == 0.5
            c.request("/param/prompt", "a <glass>")
            assert c.request("/param/concept", "riff")[-1].args == ("/param/concept", "riff")
            c.request("/param/lora_scale", 0.25)
            done = c.request("/trigger", timeout=30)[-1]
            record = json.loads(Path(done.args[2]).with_suffix(".json").read_text())
            assert (record["concept"], record["lora_scale"]) == ("riff", 0.25)
            assert c.request("/param/concept")[-1].args == ("/param/concept", "")

            assert c.request("/concept/unload", "riff")[-1].args == ("/concept/unload", "riff")
            assert c.request("/concept/list")[-1].args == ("glass",)
            reply = c.request("/concept/available")[-1]
            assert reply.address == "/concept.available" and reply.args[4:] == (
                "riff", "lora", "musicldm", 0)
            reply = c.request("/gen", "x", "concept", "riff")[-1]
            assert reply.address == "/fail" and "not loaded (loaded: glass)" in reply.args[1]


def test_load_waits_for_the_engine_and_status_keeps_answering(tmp_path: Path,
                                                              concepts_dir: Path) -> None:
    config = _config(tmp_path, concepts_dir)
    engine = held_engine(config)
    for server in run_server(config, engine):
        asyncio.run_coroutine_threadsafe(engine.hold(), server.loop)
        assert engine.busy.wait(10)
        with server.client() as c:
            c.send("/concept/load", "riff")
            assert c.request("/status", timeout=5)[-1].address == "/status.reply"
            assert c.receive(0.3) is None, "the load must wait for the engine"
            engine.release.set()
            done = c.wait_for(lambda r: r.address in ("/done", "/fail"), timeout=30)[-1]
            assert done.args == ("/concept/load", "riff", "lora", "loaded")


def test_operations_run_in_arrival_order_with_jobs(tmp_path: Path, concepts_dir: Path) -> None:
    """A /gen naming riff queued before /concept/unload riff still gets riff; /sync sent after a
    pending /concept/load answers only once the load is done."""
    config = _config(tmp_path, concepts_dir, concepts_autoload=["riff"])
    engine = held_engine(config)
    for server in run_server(config, engine):
        asyncio.run_coroutine_threadsafe(engine.hold(), server.loop)
        assert engine.busy.wait(10)
        with server.client() as c:
            c.send("/gen", "a riff", "concept", "riff", "id", 7)
            assert c.wait_for(lambda r: r.address == "/queued")[-1].args == (7, 0)
            c.send("/concept/unload", "riff")
            c.send("/concept/load", "glass")
            c.send("/sync", 3)
            assert c.receive(0.3) is None, "everything waits behind the held engine"
            engine.release.set()
            c.wait_for(lambda r: r.address == "/synced", timeout=30)
            got = [(r.address, *r.args[:2]) for r in c.received if r.address != "/queued"]
            # the clip's /done may follow the unload's: it is written after the engine ran it
            assert sorted(got[:3]) == [("/done", "/concept/load", "glass"),
                                       ("/done", "/concept/unload", "riff"),
                                       ("/done", "/gen", 7)], got
            assert got[3:] == [("/synced", 3)], got
            gen = next(r for r in c.received if r.address == "/done" and r.args[0] == "/gen")
            record = json.loads(Path(gen.args[2]).with_suffix(".json").read_text())
            assert record["concept"] == "riff"


@pytest.mark.parametrize(("autoload", "expected"), [(["riff"], ("riff",)),
                                                    ("*", ("glass", "riff"))])
def test_autoload(tmp_path: Path, concepts_dir: Path, autoload: object,
                  expected: tuple[str, ...]) -> None:
    config = _config(tmp_path, concepts_dir, concepts_autoload=autoload)
    for server in run_server(config):
        with server.client() as c:
            assert c.request("/concept/list")[-1].args == expected


def test_autoload_of_a_bad_name_stops_start_up(tmp_path: Path, concepts_dir: Path) -> None:
    from dreamsampler.engine.concepts import ConceptError

    with pytest.raises(ConceptError, match="no such concept folder"):
        for _ in run_server(_config(tmp_path, concepts_dir, concepts_autoload=["ghost"])):
            pass
