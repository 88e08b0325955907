"""Takes over real UDP: ``/gen … count 3`` is one job delivering three WAVs (take index in the
name and the sidecar) listed in one ``/done``; each equals the same seed generated alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from dreamsampler.client import OscClient
from dreamsampler.server.preset_book import PresetBook
from tests.conftest import RunningServer
from tests.engine.test_takes import ATOL


def test_gen_count_delivers_every_take(server: RunningServer, client: OscClient) -> None:
    with server.client() as listener:
        listener.request("/notify", 1)
        replies = client.request("/gen", "warm pad", "seed", 5, "count", 3, "steps", 2,
                                 "duration", 1.0)
        job_id = replies[0].args[0]
        done = replies[-1]
        assert done.address == "/done" and done.args[:2] == ("/gen", job_id)
        paths = [Path(p) for p in done.args[2:]]
        assert len(paths) == 3
        listener.wait_for(lambda r: r.address == "/job.ended" and r.args[0] == job_id)
        progress = [r.args[1] for r in listener.received
                    if r.address == "/progress" and r.args[0] == job_id]
        assert progress == [0.5, 1.0]  # one progress per step for the whole batch
    for k, path in enumerate(paths):
        assert path.name.endswith(f"_warm-pad_{5 + k}_take{k + 1}.wav")
        record = json.loads(path.with_suffix(".json").read_text())
        assert (record["seed"], record["take"], record["takes"]) == (5 + k, k + 1, 3)
        assert record["job_id"] == job_id
    alone = client.request("/gen", "warm pad", "seed", 6, "steps", 2, "duration", 1.0)[-1]
    assert len(alone.args) == 3
    np.testing.assert_allclose(sf.read(paths[1])[0], sf.read(alone.args[2])[0], rtol=0,
                               atol=ATOL + 2.0**-22)  # + PCM_24 rounding


def test_count_is_refused_out_of_range(client: OscClient) -> None:
    fail = client.request("/gen", "warm pad", "count", 9)[-1]
    assert fail.address == "/fail" and "count" in fail.args[1]


def test_preset_count_reaches_the_job(tmp_path: Path) -> None:
    (tmp_path / "bank.yaml").write_text(
        "- name: pads\n  prompt: soft pad\n  seconds: 1.0\n  seed: 3\n  count: 4\n")
    assert PresetBook(tmp_path).job("pads").params.count == 4
