"""Process-wide defaults read in one place: how many worker processes, and whether to be quiet."""

from __future__ import annotations

import os


def quiet() -> bool:
    """WARDROBE_QUIET=1: no progress bars or info lines (warnings and errors still print)."""
    return os.environ.get("WARDROBE_QUIET") == "1"


def default_workers(training: bool = False) -> int:
    """Worker processes for decoding photos: up to 4, one per core. While a network trains in the
    main process, half the cores, and none on 2 cores: there a worker process takes cycles from the
    network's two threads, and augmenting cached pixels in the main process is faster (44 against 36
    photos/s, bench/train_speed.py)."""
    cores = os.cpu_count() or 2
    if training:
        return 0 if cores <= 2 else min(4, cores // 2)
    return max(1, min(4, cores))
