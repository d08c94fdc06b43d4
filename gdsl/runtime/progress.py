"""A small text progress bar on stderr (no dependency); silent unless asked for."""
from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, total: int, label: str, stream=None, width: int = 30, first: int = 0):
        self.total = max(1, int(total))
        self.first = min(int(first), self.total)  # done before this bar started (a resumed fit)
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.start = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if done < self.total and now - self.last < 0.2:
            return
        self.last = now
        frac = min(1.0, done / self.total)
        filled = int(frac * self.width)
        elapsed = now - self.start
        # the rate is what this bar has seen, so a resumed run does not count earlier work as free
        progressed = done - self.first
        eta = elapsed / progressed * (self.total - done) if progressed > 0 else 0.0
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                          f"{done}/{self.total} {elapsed:.1f}s eta {eta:.1f}s")
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()
