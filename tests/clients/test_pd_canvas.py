"""The Pd patch driven as a user drives it: canvas events on the real boxes, headless Pd.

A harness instantiates ``pd_patches/dreamsampler.pd`` (as ``[dreamsampler <port> <reply-port>]``
so that the test picks free ports) and sends its canvas, ``pd-dreamsampler.pd``, the messages the
Pd GUI sends for a mouse click (``mouse x y 1 0`` / ``mouseup x y 1``) and a key press
(``key 1 <keynum> 0``), at the positions of the boxes read from the generated file. ``vis 1``
gives the canvas the editor a window would have (Pd runs ``-nogui``). Replies, the status line,
the seed and the output level are printed by ``[r ...]`` objects in the harness.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamsampler.clients import FILES, pd, repository_root
from tests.clients.test_pd_live import PD, _free_udp_port, _replies, _run_pd
from tests.conftest import RunningServer

pytestmark = [pytest.mark.pd, pytest.mark.skipif(PD is None, reason="Pure Data (pd) not installed")]
CANVAS = "pd-dreamsampler.pd"
#: the first value of an unseeded [random 1000000] in every Pd session
PD_FIRST_RANDOM = 743639


def _boxes() -> list[pd.PdBox]:
    return pd.parse((repository_root() / FILES[2]).read_text(encoding="utf-8"))[0]


def _atom(receive: str) -> tuple[int, int]:
    """A point inside the atom box (list/float box) with receive name ``receive``."""
    local = receive.replace("ds-", pd.PREFIX + "-", 1)  # this copy's $0-ds-<name>
    box = next(b for b in _boxes() if b.kind in ("listbox", "floatatom", "symbolatom")
               and pd.unescape(b.words[7]) == local)
    return box.x + 5, box.y + 5


def _iemgui(kind: str, label: str) -> tuple[int, int]:
    """The centre of the bng/tgl labelled ``label``."""
    label_at = {"bng": 7, "tgl": 5}[kind]
    box = next(b for b in _boxes() if b.kind == "obj" and b.words[0] == kind
               and b.words[label_at] == label)
    size = int(box.words[1])
    return box.x + size // 2, box.y + size // 2


def _message(text: str) -> tuple[int, int]:
    box = next(b for b in _boxes() if b.kind == "msg" and b.text == text)
    return box.x + 5, box.y + 5


def click(at: tuple[int, int]) -> str:
    x, y = at
    return f"\\; {CANVAS} mouse {x} {y} 1 0 \\; {CANVAS} mouseup {x} {y} 1"


def type_keys(text: str, enter: bool = True) -> str:
    keys = [ord(c) for c in text] + ([10] if enter else [])
    return " ".join(f"\\; {CANVAS} key 1 {k} 0" for k in keys)


def _harness(tmp_path: Path, server_port: int, reply_port: int, script: str,
             on_loaded: str = "", quit_ms: int = 30000) -> Path:
    """Runs ``script`` 500 ms after load and ``on_loaded`` 200 ms after a clip was loaded;
    quits 1 s after that, or ``quit_ms`` after load."""
    text = f"""#N canvas 0 0 400 300 12;
#X obj 10 10 dreamsampler {server_port} {reply_port};
#X obj 10 40 loadbang;
#X obj 10 70 delay 500;
#X msg 10 100 \\; {CANVAS} vis 1 {script};
#X obj 10 150 t a;
#X obj 10 180 print REPLY;
#X obj 150 150 t f;
#X obj 150 180 print LOADED;
#X obj 150 210 delay 1200;
#X msg 150 240 \\; pd quit;
#X obj 250 10 route status seed level;
#X obj 250 40 print STATUS;
#X obj 250 70 t a;
#X obj 250 100 print SEED;
#X obj 250 130 t a;
#X obj 250 160 print LEVEL;
#X msg 300 200 {on_loaded or "bang"};
#X obj 300 180 delay 200;
#X obj 100 40 delay {quit_ms};
#X obj 150 120 t b;
#X connect 1 0 2 0;
#X connect 2 0 3 0;
#X connect 0 0 4 0;
#X connect 0 1 6 0;
#X connect 0 2 10 0;
#X connect 10 1 12 0;
#X connect 10 2 14 0;
#X connect 4 0 5 0;
#X connect 6 0 7 0;
#X connect 6 0 19 0;
#X connect 19 0 8 0;
#X connect 8 0 9 0;
#X connect 10 0 11 0;
#X connect 12 0 13 0;
#X connect 14 0 15 0;
#X connect 19 0 17 0;
#X connect 17 0 16 0;
#X connect 1 0 18 0;
#X connect 18 0 9 0;
"""
    path = tmp_path / "canvas-harness.pd"
    path.write_text(text)
    return path


def _printed(console: str, tag: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in console.splitlines()
            if line.startswith(tag + ":")]


def test_a_user_session_by_mouse_and_keyboard(server: RunningServer, tmp_path: Path) -> None:
    """Typing a prompt without Enter and clicking Generate sends nothing and says why; typed
    and entered, with steps and duration typed into their boxes, the dice rolled and the seed
    locked, Generate sends exactly that; the clip comes back, DSP is switched on with the
    patch's ``; pd dsp 1`` box and play makes sound (the level meter rises above silence)."""
    prompt, generate = _atom("ds-prompt"), _iemgui("bng", "Generate")
    script = " ".join([
        click(prompt), type_keys("dub techno", enter=False), click(generate),  # refused
        click(prompt), type_keys("dub techno"),
        click(_atom("ds-steps")), type_keys("2"),
        click(_atom("ds-duration")), type_keys("1"),
        click(_iemgui("bng", "dice")), click(_iemgui("tgl", "lock")),
        click(generate),
    ])
    on_loaded = " ".join([click(_message("; pd dsp 1")), click(_iemgui("bng", "play"))])
    console = _run_pd(_harness(tmp_path, server.port, _free_udp_port(), script, on_loaded),
                      timeout=60)
    # the status lines, as the third outlet gives them ("status <words>"; Pd prints a list
    # that starts with a symbol with or without "list")
    status = [s.removeprefix("list ") for s in _printed(console, "STATUS")]
    typing = status.index("typing: press Enter to use what you typed")
    assert status[typing + 1] == "not sent: press Enter to confirm what you typed", status
    assert status[typing + 2] == "text entered", status
    assert not any(s.startswith("queued") for s in status[:typing + 2])
    seeds = [float(s) for s in _printed(console, "SEED")]
    assert len(seeds) == 2 and seeds[0] == 0, "the default, then the dice"
    rolled = int(seeds[1])
    replies = _replies(console)
    queued = [r for r in replies if r[0] == "queued"]
    assert len(queued) == 1, "the refused click sent nothing"
    done = next((r for r in replies if r[:2] == ["done", "/gen"]), None)
    assert done is not None, console
    record = json.loads(Path(done[3]).with_suffix(".json").read_text())
    assert record["prompt"] == "dub techno", "the typed prompt, not the previous one"
    assert (record["seed"], record["num_inference_steps"], record["duration"]) == (rolled, 2, 1.0)
    assert "LOADED:" in console
    levels = [float(v) for v in _printed(console, "LEVEL")]
    assert levels and max(levels) > 20, (
        "play sounds once DSP is on (env~ in dB, 100 = full scale; silence is 0)", levels)
    assert "error" not in console, console


def test_the_first_dice_differs_between_sessions(tmp_path: Path) -> None:
    """[random] is seeded at load: two fresh Pd sessions roll different first seeds, and
    neither is the value every unseeded session rolls."""
    rolls = []
    for session in range(2):
        folder = tmp_path / str(session)
        folder.mkdir()
        harness = _harness(folder, _free_udp_port(), _free_udp_port(),
                           click(_iemgui("bng", "dice")), quit_ms=1500)
        console = _run_pd(harness, timeout=20)
        seeds = _printed(console, "SEED")
        assert len(seeds) == 2, console
        rolls.append(int(float(seeds[1])))
    assert rolls[0] != rolls[1]
    assert PD_FIRST_RANDOM not in rolls and all(0 <= r < 1_000_000 for r in rolls)
