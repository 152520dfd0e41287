"""Console output shared by the API and CLI: messages and progress go to stderr, results to stdout."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from wardrobe.settings import quiet

console = Console(stderr=True, highlight=False)
# Results (tables) go to standard output, so they can be redirected apart from progress and warnings.
results = Console(highlight=False)


def progress(enabled: bool = True) -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, disable=quiet() or not enabled, transient=False)


def info(msg: str) -> None:
    if not quiet():
        console.print(msg)


def warn(msg: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {msg}")
