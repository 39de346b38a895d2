"""A small text progress bar: redrawn in place on a terminal, a line every tenth of the way otherwise."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

WIDTH = 28


class Bar:
    """``update(done, note)`` as the work goes; ``close(note)`` once it is over."""

    def __init__(self, title: str, total: float, stream: TextIO = sys.stdout):
        self.title = title
        self.total = max(float(total), 1e-9)
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._last_tenth = -1
        self._closed = False

    def update(self, done: float, note: str = "") -> None:
        fraction = min(max(done / self.total, 0.0), 1.0)
        if self.tty:
            self._draw(fraction, note, end="")
        elif int(fraction * 10) > self._last_tenth:  # logs get ten lines, not one per poll
            self._last_tenth = int(fraction * 10)
            self._draw(fraction, note, end="\n")

    def close(self, note: str = "") -> None:
        if not self._closed:
            self._closed = True
            self._draw(1.0, note, end="\n")

    def _draw(self, fraction: float, note: str, end: str) -> None:
        filled = round(WIDTH * fraction)
        elapsed = time.monotonic() - self.started
        line = f"    {self.title:<24} [{'#' * filled}{'.' * (WIDTH - filled)}] {fraction:4.0%} {elapsed:5.0f}s  {note}"
        if self.tty:
            columns = shutil.get_terminal_size((120, 20)).columns
            line = "\r" + line[: columns - 1].ljust(columns - 1)
        self.stream.write(line + end)
        self.stream.flush()
