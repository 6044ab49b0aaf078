"""Progress on stderr for long operations, and warnings gathered into one closing summary."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO


class Progress:
    """A byte-based progress bar on stderr that appears only once the work has lasted ``delay``
    seconds, and only on a terminal (or when ``force``). ``total`` may be None (stdin)."""

    def __init__(
        self,
        description: str,
        total: int | None,
        *,
        enabled: bool = True,
        delay: float = 1.0,
        force: bool = False,
        stream: TextIO | None = None,
    ):
        self.description = description
        self.total = total
        self.stream = stream or sys.stderr
        tty = getattr(self.stream, "isatty", lambda: False)()
        self.enabled = enabled and (tty or force)
        self.force = force
        self.delay = delay
        self._t0 = time.monotonic()
        self._bar = None
        self._task = None
        self.shown = False

    def update(self, done: int) -> None:
        """Report ``done`` bytes (or units) of ``total`` finished."""
        if not self.enabled:
            return
        if self._bar is None:
            if time.monotonic() - self._t0 < self.delay:
                return
            self._start()
        self._bar.update(self._task, completed=done)

    def start(self) -> None:
        """Show the bar now (for work known to be long), if enabled."""
        if self.enabled and self._bar is None:
            self._start()

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        console = Console(file=self.stream, force_terminal=self.force or None)
        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.description, total=self.total)
        self.shown = True

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Warnings:
    """Warnings of one command, de-duplicated and counted, printed once at the end."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def add(self, message: str, count: int = 1) -> None:
        self._counts[message] += count

    def __len__(self) -> int:
        return len(self._counts)

    def __bool__(self) -> bool:
        return bool(self._counts)

    @property
    def messages(self) -> list[str]:
        return [m if n == 1 else f"{m} (x{n})" for m, n in self._counts.items()]

    def emit(self, stream: TextIO | None = None, prog: str = "pyxentrace") -> None:
        """Print the closing summary: one line, or a header and one indented line per warning."""
        if not self._counts:
            return
        out = stream or sys.stderr
        msgs = self.messages
        if len(msgs) == 1:
            print(f"{prog}: warning: {msgs[0]}", file=out)
            return
        print(f"{prog}: {len(msgs)} warnings:", file=out)
        for m in msgs:
            print(f"  - {m}", file=out)
