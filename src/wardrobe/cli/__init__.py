"""The ``wardrobe`` command: a thin layer of options over the Python API."""

# ruff: noqa: I001 - importing train, use and catalog registers their commands, in the order --help lists them
from __future__ import annotations

import sys

from wardrobe.cli.common import app
from wardrobe.cli import train, use, catalog  # noqa: F401
from wardrobe.errors import WardrobeError
from wardrobe.ui import console

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except WardrobeError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        sys.exit(130)
