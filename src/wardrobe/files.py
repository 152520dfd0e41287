"""Rules for the files wardrobe writes, shared by every command: nothing a user made is replaced
without their say-so."""

from __future__ import annotations

import os
from pathlib import Path

from wardrobe.errors import WardrobeError


def is_secondary_process() -> bool:
    """A process Lightning started for DDP rank > 0: it re-runs the command while rank 0 already
    checked and prepared the outputs, so it leaves those checks to rank 0."""
    return any(os.environ.get(k, "0") not in ("", "0") for k in ("LOCAL_RANK", "NODE_RANK"))


def check_output_file(path: Path, fmt: str, overwrite: bool = False, resume: bool = False) -> None:
    """One line for an --output that is a folder, or a non-empty file that neither --resume nor
    --overwrite allows to touch."""
    if path.is_dir():
        raise WardrobeError(f"--output {path}: is a folder; name a file in it, e.g. {path / ('labels.' + fmt)}")
    if path.is_file() and path.stat().st_size > 0 and not (overwrite or resume) and not is_secondary_process():
        raise WardrobeError(f"--output {path}: already exists; pass --resume to add the photos missing from it, "
                            "or --overwrite to replace it")


def drop_partial_last_line(path: Path) -> None:
    """An interruption mid-write leaves a last line without its newline: cut it off, so what it
    held is written again rather than kept half-written (result rows, review decisions)."""
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        # walk back to the previous newline in chunks (lines are short)
        pos, chunk = size, 4096
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            data = f.read(pos - start)
            nl = data.rfind(b"\n")
            if nl >= 0:
                f.truncate(start + nl + 1)
                return
            pos = start
        f.truncate(0)
