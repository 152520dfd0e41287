"""Decoded-photo cache: each photo decoded and resized once into a memory-mapped uint8 array, so
training epochs never decode a JPEG again.

Layout: ``<cache>/pixels/<size>-<interpolation>-<mode>[-a<aspect>]/shard-*.npy`` (N x height x width x 3
uint8, memory-mapped; height = size, width = size x aspect) and a
matching ``shard-*.json`` listing the content digest of each row. Shards are only ever added, so
an interrupted fill keeps the shards it completed and concurrent runs never clash.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from wardrobe.data.cache import cache_dir, file_digest, read_shards, triage
from wardrobe.data.images import load_image
from wardrobe.data.loader import iter_pixel_batches
from wardrobe.transforms import Preprocess
from wardrobe.ui import info, progress


def cache_preprocess(size: int, interpolation: str = "bicubic", resize_mode: str = "crop",
                     aspect: float = 1.0) -> Preprocess:
    """The centre of the photo resized to cover a canvas ``size`` high and ``size`` x ``aspect`` wide
    ("crop"; the centre square when square), or the whole photo squashed into it ("squash"): the
    canvas for training crops, whose centre crop is the inference view."""
    return Preprocess(input_size=size, resize_mode=resize_mode, crop_pct=1.0, interpolation=interpolation,
                      aspect=aspect)


class PixelCache:
    def __init__(self, size: int, interpolation: str = "bicubic", resize_mode: str = "crop",
                 root: Path | None = None, aspect: float = 1.0):
        self.preprocess = cache_preprocess(size, interpolation, resize_mode, aspect)
        self.shape = (*self.preprocess.hw, 3)
        name = f"{size}-{interpolation}-{resize_mode}" + (f"-a{aspect:g}" if aspect != 1.0 else "")
        self.dir = (root or cache_dir()) / "pixels" / name
        self.index: dict[str, tuple[int, int]] = {}  # digest -> (shard number, row)
        self.bad: dict[str, str] = {}
        self.shards: list[np.ndarray] = []
        self._load()

    def _load(self) -> None:
        def read(meta_path: Path):
            meta = json.loads(meta_path.read_text())  # JSONDecodeError is a ValueError
            return meta, np.load(meta_path.with_suffix(".npy"), mmap_mode="r") if meta["digests"] else None

        for meta, arr in read_shards(self.dir, "shard-*.json", read):
            k = len(self.shards)
            self.shards.append(arr)
            self.index.update((d, (k, row)) for row, d in enumerate(meta["digests"]))
            self.bad.update(meta.get("bad", {}))

    def fill(self, paths: Sequence[str | Path], digests: Sequence[str | None], batch_size: int = 64,
             workers: int | None = None, show_progress: bool = True) -> dict[int, str]:
        """Decode whatever is not cached yet. Returns {index into paths: reason} for bad files."""
        todo, errors = triage(paths, digests, self.index, self.bad)
        todo = list({digests[i]: i for i in todo}.values())  # one decode per distinct content
        if not todo:
            return errors
        h, w = self.shape[:2]
        info(f"decoding {len(todo)} photos into the pixel cache ({h} px" + (f" x {w} px)" if w != h else ")"))
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns()}-{uuid.uuid4().hex[:6]}"
        tmp_npy = self.dir / f".{name}.npy"
        arr = np.lib.format.open_memmap(tmp_npy, mode="w+", dtype=np.uint8, shape=(len(todo), *self.shape))
        ok_rows: list[int] = []
        bad: dict[str, str] = {}
        with progress(show_progress) as bar:
            task = bar.add_task("decode", total=len(todo), rate="")
            for idx, pixels, failed in iter_pixel_batches([paths[i] for i in todo], self.preprocess, batch_size, workers):
                if len(idx):
                    arr[idx.numpy()] = pixels.permute(0, 2, 3, 1).numpy()
                    ok_rows.extend(idx.tolist())
                for j, reason in failed:
                    bad[digests[todo[j]]] = reason
                    errors[todo[j]] = reason
                bar.update(task, advance=len(idx) + len(failed))
        arr.flush()
        del arr
        ok_rows.sort()
        final = np.load(tmp_npy, mmap_mode="r")
        if len(ok_rows) != len(todo):
            # Compact out the rows of files that failed to decode.
            compact = np.lib.format.open_memmap(self.dir / f".{name}.c.npy", mode="w+", dtype=np.uint8,
                                                shape=(len(ok_rows), *self.shape))
            for k, r in enumerate(ok_rows):
                compact[k] = final[r]
            compact.flush()
            del compact, final
            os.replace(self.dir / f".{name}.c.npy", tmp_npy)
        os.replace(tmp_npy, self.dir / f"{name}.npy")
        meta = {"digests": [digests[todo[r]] for r in ok_rows], "bad": bad}
        (self.dir / f"{name}.json").write_text(json.dumps(meta))
        k = len(self.shards)
        self.shards.append(np.load(self.dir / f"{name}.npy", mmap_mode="r") if ok_rows else None)
        for row, d in enumerate(meta["digests"]):
            self.index[d] = (k, row)
        self.bad.update(bad)
        return errors

    def get(self, digest: str) -> torch.Tensor:
        """uint8 CHW tensor of the cached photo."""
        k, row = self.index[digest]
        return torch.from_numpy(np.array(self.shards[k][row])).permute(2, 0, 1)  # a writable copy of the mapped row


class CachedPhotos(Dataset):
    """(pixels uint8 CHW, label) from the pixel cache, through an optional transform."""

    def __init__(self, cache: PixelCache, digests: Sequence[str], labels: Sequence[int], transform=None):
        self.cache = cache
        self.digests = list(digests)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.digests)

    def __getitem__(self, i: int):
        x = self.cache.get(self.digests[i])
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i]


class DecodedPhotos(Dataset):
    """The same, decoding the JPEG every time: the baseline the cache is measured against."""

    def __init__(self, paths: Sequence[str | Path], labels: Sequence[int], size: int, transform=None,
                 interpolation: str = "bicubic", resize_mode: str = "crop", aspect: float = 1.0):

        self._load = load_image
        self.paths = list(paths)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.pre = cache_preprocess(size, interpolation, resize_mode, aspect)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        x = self.pre.pixels(self._load(self.paths[i], min_side=self.pre.resize_to))
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i]


def digests_for(paths: Sequence[str | Path]) -> list[str | None]:
    return [file_digest(p) for p in paths]
