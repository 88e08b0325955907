"""Strict options over real UDP: a bad key or value gets ``/fail`` naming it (with a
did-you-mean), never prompt text; unquoted multi-atom prompts keep working; seeds are fresh
unless locked, and the seed used is in the file name and the sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamsampler.client import OscClient, Reply
from tests.conftest import RunningServer


def _final(replies: list[Reply], address: str) -> Reply:
    final = replies[-1]
    assert final.args[0] == address, final
    return final


def _record(replies: list[Reply]) -> dict[str, object]:
    final = _final(replies, "/gen")
    assert final.address == "/done", final
    return json.loads(Path(final.args[2]).with_suffix(".json").read_text())


@pytest.mark.parametrize(
    ("atoms", "texts"),
    [
        (("warm", "seedd", 7), ("unknown option 'seedd'", "value 7", "did you mean 'seed'?",
                                "known: negative, seed, steps")),
        (("warm", "guidance", -3.0, "steps", 2), ("guidance -3 is below the minimum 0",
                                                 "allowed 0..50")),
        (("warm", "steps", "two"), ("steps: expected int, got 'two'",)),
        (("warm", "seed", 7, "stepz", 2), ("unknown option 'stepz'", "did you mean 'steps'?")),
        (("warm", "seed", 7, "colour", "red"), ("unknown option 'colour'", "value 'red'")),
        (("warm", "scheduler", "eulr"), ("scheduler: 'eulr' is not one of ddim, dpm++",
                                         "did you mean 'euler'?")),
    ],
)
def test_bad_options_fail_and_name_the_key(server: RunningServer, client: OscClient,
                                           atoms: tuple[object, ...],
                                           texts: tuple[str, ...]) -> None:
    fail = _final(client.request("/gen", *atoms, timeout=20), "/gen")
    assert fail.address == "/fail", fail
    for text in texts:
        assert text in fail.args[1], (text, fail)
    assert list(server.output_dir.glob("*.wav")) == [], "nothing was generated"


def test_unquoted_prompts_and_fresh_or_locked_seeds(server: RunningServer,
                                                    client: OscClient) -> None:
    short = ("duration", 0.3, "steps", 2)
    record = _record(client.request("/gen", "warm", "analog", "bass", "seed", 7, *short))
    assert (record["prompt"], record["seed"]) == ("warm analog bass", 7)
    record = _record(client.request("/gen", "a", "seed", "pod", "seed", 3, *short))
    assert (record["prompt"], record["seed"]) == ("a seed pod", 3)
    # no seed, and seed -1: a fresh seed each time, written in the sidecar and the file name
    seeds = []
    for extra in ((), ("seed", -1), ()):
        replies = client.request("/gen", "dub", "chord", *extra, *short)
        record = _record(replies)
        assert replies[-1].args[2].endswith(f"_{record['seed']}.wav")
        seeds.append(record["seed"])
    assert len(set(seeds)) == 3 and all(0 <= s < 2**31 for s in seeds), seeds
    # a chosen session seed is locked: requests without a seed use it
    assert client.request("/param/seed", 42)[-1].address == "/done"
    assert _record(client.request("/gen", "dub", *short))["seed"] == 42
    assert _record(client.request("/gen", "dub", "seed", -1, *short))["seed"] != 42
    client.request("/param/seed_lock", 0)
    assert _record(client.request("/gen", "dub", *short))["seed"] != 42
    # /param/seed -1 unlocks too; /param/seed_lock 1 locks the seed held
    client.request("/param/seed_lock", 1)
    assert _record(client.request("/gen", "dub", *short))["seed"] == 42
    client.request("/param/seed", -1)
    assert _record(client.request("/gen", "dub", *short))["seed"] != 42


def test_status_reply_is_typed_and_the_client_matches_jobs_by_id(
        server: RunningServer, client: OscClient) -> None:
    from dreamsampler.client import JobReplies
    from dreamsampler.server.contract import REPLIES, StatusReply

    status = StatusReply.from_atoms(client.request("/status")[-1].args)
    assert [f for f in status.__dataclass_fields__] == [
        a.name for a in REPLIES["/status.reply"].args]
    assert (status.running, status.output_dir) == (-1, str(server.output_dir))
    assert status.labelled().startswith("/status.reply queued=0 running=-1 ")
    # two jobs in flight from one socket: each request ends on its own job's /done
    client.send("/gen", "first", "seed", 1, "duration", 0.3, "steps", 2)
    first = client.wait_for(lambda r: r.address == "/queued")[-1].args[0]
    replies = client.request("/gen", "second", "seed", 2, "duration", 0.3, "steps", 2)
    queued = [r.args[0] for r in replies if r.address == "/queued"]
    done = replies[-1]
    assert queued[0] != first
    assert done.address == "/done" and done.args[1] == queued[0], replies
    assert any(r.address == "/done" and r.args[1] == first for r in replies), \
        "the first job's /done came first and was passed over"
    assert done.args[2].endswith("_second_2.wav")
    # a reply naming another job does not end the wait
    wait = JobReplies("/gen")
    assert not wait(Reply("/queued", (7, 0)))
    assert not wait(Reply("/done", ("/gen", 6, "/x.wav")))
    assert not wait(Reply("/fail", ("/gen", "boom", 6)))
    assert wait(Reply("/done", ("/gen", 7, "/y.wav")))
