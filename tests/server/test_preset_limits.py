"""/preset/save off the event loop and incremental, bounded by limits.max_presets;
/preset/list paged (issue 22, item 5)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import yaml
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg

from dreamsampler.server import preset_book, presets
from dreamsampler.server.osc import MAX_DATAGRAM
from tests.conftest import make_config, run_server


def _bank(folder: Path, count: int) -> list[str]:
    names = [f"pad {i:04d} " + "x" * 50 for i in range(count)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "big.yaml").write_text(yaml.safe_dump(
        [{"name": n, "prompt": "warm pad", "seconds": 1.0} for n in names]))
    return names


def test_save_writes_off_the_loop_without_reloading_and_is_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path, **{"limits.max_presets": 4})
    _bank(config.live.presets_dir, 2)
    writers: list[str] = []
    reloads: list[int] = []
    real_save, real_load = presets.save_preset, preset_book.load_presets

    def save(*args: object, **kw: object) -> Path:
        writers.append(threading.current_thread().name)
        return real_save(*args, **kw)  # type: ignore[arg-type]

    def load(*args: object, **kw: object) -> object:
        reloads.append(1)
        return real_load(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(preset_book, "save_preset", save)
    monkeypatch.setattr(preset_book, "load_presets", load)
    for server in run_server(config):
        loop_thread = "test-server-loop"
        assert len(reloads) == 1  # at start
        with server.client() as c:
            c.request("/param/prompt", "glass bells")
            for name in ("one", "two", "one"):  # "one" twice: replaced, not counted twice
                done = c.request("/preset/save", name, timeout=10)[-1]
                assert done.address == "/done", done
                assert Path(done.args[1]).is_file()
            full = c.request("/preset/save", "three", timeout=10)[-1]
            assert full.address == "/fail" and "limits.max_presets 4" in full.args[1]
            assert not (config.live.presets_dir / "three.yaml").exists()
            names = c.request("/preset/list", timeout=5)[-1].args
            assert names[-2:] == ("one", "two")
            assert c.request("/preset/trigger", "two", timeout=60)[-1].address == "/done"
        assert writers and loop_thread not in writers, writers
        assert len(reloads) == 1, "a save reloaded the whole folder"


def test_preset_list_is_paged_and_never_exceeds_a_datagram(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    names = _bank(config.live.presets_dir, 1200)  # 1,200 × 60 characters: > 64 KiB
    for server in run_server(config):
        with server.client() as c:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:  # large datagrams
                raw.settimeout(10)
                raw.sendto(build_msg("/preset/list", []).dgram, ("127.0.0.1", server.port))
                data = raw.recv(MAX_DATAGRAM)
            whole = OscMessage(data)
            assert whole.address == "/preset.list"  # before: /fail "reply not sent"
            assert 900 < len(whole.params) < 1200 and whole.params == names[:len(whole.params)]
            got: list[str] = []
            page, pages = 0, 1
            while page < pages:
                c.send("/preset/list", page)
                reply = c.wait_for(lambda r: r.address == "/preset.page", timeout=5)[-1]
                assert reply.address == "/preset.page" and reply.args[0] == page
                pages = reply.args[1]
                got += reply.args[2:]
                page += 1
            assert pages == 19 and got == names
            c.send("/preset/list", 99)
            assert c.wait_for(lambda r: r.address == "/preset.page")[-1].args == (99, 19)
