"""Rate-limited logging for what clients send: a token bucket per category.

A patch stuck in a loop, a fuzzer or a flood can send thousands of bad messages a second; logging
each one (let alone its traceback) fills the disk and slows the server. :class:`LogLimiter` lets a
burst of lines through per category, then about one line per ``interval`` seconds; the next line
that gets through says how many were suppressed ("… (41 similar messages suppressed)").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    suppressed: int = 0


class LogLimiter:
    """Token-bucket rate limit per category for one logger.

    Args:
        logger: where lines go.
        burst: lines a category may log at once (bucket size).
        interval: seconds per refilled token (1.0: one line a second once the burst is spent).
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, logger: logging.Logger, burst: int = 10, interval: float = 1.0,
                 clock: Clock = time.monotonic) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        #: lines suppressed so far, all categories
        self.suppressed = 0

    def allow(self, category: str) -> tuple[bool, int]:
        """Take a token for ``category``: (whether to log, lines suppressed since the last one)."""
        now = self.clock()
        bucket = self._buckets.get(category)
        if bucket is None:
            bucket = self._buckets[category] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) / self.interval)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            bucket.suppressed += 1
            self.suppressed += 1
            return False, 0
        bucket.tokens -= 1.0
        skipped, bucket.suppressed = bucket.suppressed, 0
        return True, skipped

    def log(self, category: str, level: int, msg: str, *args: object,
            exc_info: bool = False) -> bool:
        """Log ``msg % args`` at ``level`` unless ``category`` is over its rate; True if logged.

        ``exc_info`` adds the current traceback (only to lines that get through).
        """
        ok, skipped = self.allow(category)
        if not ok:
            return False
        if skipped:
            msg = f"{msg} ({skipped} similar messages suppressed)"
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def flush(self) -> None:
        """Log one summary line per category that has suppressed lines pending."""
        for category, bucket in self._buckets.items():
            if bucket.suppressed:
                self.logger.info("%d %s messages suppressed", bucket.suppressed, category)
                bucket.suppressed = 0


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7f)}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
_CONTROL.update({c: f"\\x{c:02x}" for c in range(0x80, 0xa0)})  # C1 controls (CSI 0x9b)


def escape_control(text: str) -> str:
    """``text`` with control characters (C0, DEL, C1: ESC, CR, LF, …) written as escapes, so a
    value a client sent cannot move the terminal's cursor, recolour it or forge a log line."""
    return text.translate(_CONTROL)


class EscapeControlFilter(logging.Filter):
    """A handler filter: each record's message (format string with its arguments) has its
    control characters escaped (:func:`escape_control`); tracebacks keep their lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape_control(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True
