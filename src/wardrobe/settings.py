"""Process-wide defaults read in one place: how many worker processes, and whether to be quiet."""

from __future__ import annotations

import os


def quiet() -> bool:
    """WARDROBE_QUIET=1: no progress bars or info lines (warnings and errors still print)."""
    return os.environ.get("WARDROBE_QUIET") == "1"


def default_workers(training: bool = False) -> int:
    """Worker processes for decoding photos: up to 4, one per core. While a network trains in the
    main process, half the cores: on 2 cores one worker keeps up with augmentation of cached pixels
    (bench/finetune_speed.py) and the other core is the network's."""
    cores = os.cpu_count() or 2
    return max(1, min(4, cores // 2 if training else cores))
