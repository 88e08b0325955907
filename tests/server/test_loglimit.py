"""The token-bucket log limiter, on a simulated clock."""

from __future__ import annotations

import logging

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
