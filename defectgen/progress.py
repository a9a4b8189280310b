"""A one-line progress bar (count, images/s, ETA) on stderr, with no dependency, and the duration formats of
progress lines."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_duration(seconds: float) -> str:
    """A run's ETA or elapsed time in a progress line: ``4m05s``, or ``1h02m`` from an hour on."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Redraws ``label done/total [pct] rate img/s ETA h:mm:ss`` in place, at most every ``interval`` s.

    ``done`` counts only work done in this run (a resumed run starts from what is already there), so the rate
    and ETA are honest.
    """

    def __init__(self, total: int, already: int = 0, label: str = "generate", enabled: Optional[bool] = None,
                 stream: Optional[TextIO] = None, interval: float = 0.2, unit: str = "img"):
        self.stream = stream or sys.stderr
        self.unit = unit
        self.postfix = ""
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.already, self.done = total, already, 0
        self.label, self.interval = label, interval
        self.start = time.perf_counter()
        self._last = 0.0

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, count: int, postfix: Optional[str] = None) -> None:
        """Count ``count`` more units done; ``postfix`` (e.g. ``"loss 0.41 acc 0.88"``) replaces the line's tail."""
        self.done += count
        if postfix is not None:
            self.postfix = postfix
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.interval or self.already + self.done >= self.total):
            self._last = now
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def line(self) -> str:
        current = self.already + self.done
        pct = 100.0 * current / self.total if self.total else 100.0
        rate = self.rate
        eta = format_seconds((self.total - current) / rate) if rate > 0 else "?"
        tail = f"  {self.postfix}" if self.postfix else ""
        return f"{self.label} {current}/{self.total} [{pct:3.0f}%] {rate:7.1f} {self.unit}/s ETA {eta}{tail}"

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
