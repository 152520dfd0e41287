"""Parallel decoding: DataLoader workers decode and resize photos; bad files travel as reasons."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from wardrobe.data.images import ImageError, load_image
from wardrobe.settings import default_workers
from wardrobe.transforms import Preprocess


class PhotoDataset(Dataset):
    def __init__(self, paths: Sequence[str | Path], preprocess: Preprocess):
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            img = load_image(self.paths[i], min_side=self.preprocess.resize_to)
            return i, self.preprocess.pixels(img), None
        except ImageError as exc:
            return i, None, exc.reason


def collate_photos(items):
    ok = [(i, x) for i, x, err in items if err is None]
    errors = [(i, err) for i, _, err in items if err is not None]
    idx = torch.tensor([i for i, _ in ok], dtype=torch.long)
    pixels = torch.stack([x for _, x in ok]) if ok else torch.zeros((0,), dtype=torch.uint8)
    return idx, pixels, errors


def iter_pixel_batches(paths: Sequence[str | Path], preprocess: Preprocess, batch_size: int = 32,
                       workers: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor, list]]:
    """Yields (indices into paths, uint8 NCHW pixels, [(index, reason) for files that failed])."""
    workers = default_workers() if workers is None else workers
    loader = DataLoader(PhotoDataset(paths, preprocess), batch_size=batch_size, shuffle=False,
                        num_workers=workers if len(paths) > batch_size else 0, collate_fn=collate_photos,
                        persistent_workers=False, prefetch_factor=4 if workers and len(paths) > batch_size else None)
    yield from loader
