"""The token-bucket log limiter, on a simulated clock."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dreamsampler.server.loglimit import LogLimiter


def test_burst_then_one_a_second_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limiter = LogLimiter(logging.getLogger("test.limit"), burst=3, interval=1.0,
                         clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.limit"):
        logged = [limiter.log("bad", logging.INFO, "bad datagram %d", i) for i in range(10)]
        assert logged == [True] * 3 + [False] * 7
        assert limiter.log("other", logging.INFO, "another kind") is True  # its own bucket
        now[0] += 1.0
        assert limiter.log("bad", logging.INFO, "bad datagram %d", 10) is True
        assert limiter.log("bad", logging.INFO, "bad datagram %d", 11) is False
        now[0] += 0.5
        assert limiter.log("bad", logging.INFO, "bad datagram %d", 12) is False
        limiter.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["bad datagram 0", "bad datagram 1", "bad datagram 2", "another kind",
                     "bad datagram 10 (7 similar messages suppressed)",
                     "2 bad messages suppressed"]
    assert limiter.suppressed == 9


def test_control_characters_from_clients_are_escaped_in_the_log(tmp_path: Path) -> None:
    """ESC, CR and LF in an address reach the log escaped: no terminal escapes, no forged
    lines (issue 22, item 8)."""
    import io

    from dreamsampler.server.loglimit import EscapeControlFilter
    from tests.conftest import make_config, run_server

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(EscapeControlFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        for server in run_server(make_config(tmp_path)):
            with server.client() as c:
                evil = "/x\x1b[2J\x1b]0;owned\x07\r\nINFO forged line\x9b31m"
                assert c.request(evil, timeout=5)[-1].address == "/fail"
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = out.getvalue()
    assert "/fail /x\\x1b[2J\\x1b]0;owned\\x07\\r\\nINFO forged line\\x9b31m" in text
    assert not any(ch in text for ch in "\x1b\r\x07\x9b")
    assert "\nINFO forged line" not in text
