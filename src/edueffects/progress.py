"""Progress display for long steps: a spinner with the step's name on a terminal, silence otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable

Progress = Callable[[str], None]


def progress_reporter(quiet: bool) -> tuple[Progress, Callable[[], None]]:
    """A spinner with step names on stderr when it is a terminal (stdout stays clean for results);
    silent when piped or quiet."""
    if quiet or not sys.stderr.isatty():
        return (lambda _step: None), (lambda: None)
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import SpinnerColumn, TextColumn

    bar = RichProgress(SpinnerColumn(), TextColumn("{task.description}"), transient=True, console=Console(stderr=True))
    task = bar.add_task("", total=None)
    bar.start()
    return (lambda step: bar.update(task, description=step)), bar.stop
