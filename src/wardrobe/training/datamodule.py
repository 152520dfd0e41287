"""The LightningDataModule of fine-tuning and training from scratch: photos decoded once into the
pixel cache (``prepare_data``), train and validation datasets with their augmentation and sampler
(``setup``), and their loaders."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from wardrobe.data.pixelcache import CachedPhotos, DecodedPhotos, PixelCache, digests_for
from wardrobe.data.sources import Dataset
from wardrobe.errors import WardrobeError
from wardrobe.settings import default_workers
from wardrobe.training.augment import eval_transform, train_transform
from wardrobe.training.config import LONG_TAIL_RATIO, SAMPLER_EXPONENTS, FitConfig, equal_area_height
from wardrobe.training.selfdistill import Indexed
from wardrobe.transforms import Preprocess, shape_for
from wardrobe.ui import info, warn


class PhotoDataModule(L.LightningDataModule):
    def __init__(self, ds: Dataset, cfg: FitConfig, pre: Preprocess, show_progress: bool = True):
        super().__init__()
        self.ds, self.cfg, self.pre, self.show_progress = ds, cfg, pre, show_progress
        self.records = ds.split("train") + ds.split("validation")
        self.n_train = len(ds.split("train"))
        index = {c: i for i, c in enumerate(ds.classes)}
        self.labels = np.array([index[r.label] for r in self.records])
        self.workers = default_workers(training=True) if cfg.workers is None else cfg.workers
        self.cache = PixelCache(pre.resize_to, pre.interpolation, pre.resize_mode, aspect=pre.aspect) \
            if cfg.use_pixel_cache else None
        self.digests: list[str | None] | None = None
        self.train_ids: list[int] = []
        self.val_ids: list[int] = []

    def _fill(self) -> dict[int, str]:
        """{record index: reason} for photos that cannot be used; decodes what is not cached yet."""
        paths = [r.path for r in self.records]
        if self.digests is None:  # each file read and hashed once, not again in setup()
            self.digests = digests_for(paths)
        if self.cache is None:
            return {}
        return self.cache.fill(paths, self.digests, workers=self.cfg.workers, show_progress=self.show_progress)

    def prepare_data(self) -> None:
        self._fill()

    def setup(self, stage: str | None = None) -> None:
        if self.train_ids:
            return
        errors = self._fill()  # every photo is cached by now: this only reads the cache's index
        # Decoding into a cold cache draws random numbers a warm one does not: seed again, so the
        # first run of a command and its rerun train the same model.
        L.seed_everything(self.cfg.seed, workers=True, verbose=False)
        for i, reason in sorted(errors.items()):
            self.ds.skipped.add(self.records[i].path, reason)
        if errors:
            warn(f"{len(errors)} photos could not be used: {self.ds.skipped.summary()}")
        keep = [i for i in range(len(self.records)) if i not in errors]
        self.train_ids = [i for i in keep if i < self.n_train]
        self.val_ids = [i for i in keep if i >= self.n_train]
        k = len(self.ds.classes)
        missing = [c for j, c in enumerate(self.ds.classes) if not (self.labels[self.train_ids] == j).any()]
        if missing:
            raise WardrobeError(f"{self.ds.name}: class {', '.join(map(repr, missing))} has no usable training photo")
        self.train_set = self._dataset(self.train_ids, train_transform(self.cfg.augment, self.pre,
                                                                      self.cfg.train_height(self.pre.aspect),
                                                                      growing=bool(self.cfg.progressive)))
        # progressive resizing's crop, and the side of the square of the full crops' area, where it ends
        self.train_crop = self.train_set.transform.transforms[0] if self.cfg.progressive else None
        self.train_side = round(math.sqrt(math.prod(self.train_crop.size))) if self.train_crop else None
        self.val_set = self._dataset(self.val_ids, eval_transform(self.pre)) if self.val_ids else None
        self.sampler_used = resolve_sampler(self.cfg.sampler, self.train_counts,
                                            self.cfg.balance)
        if self.cfg.sampler == "auto":
            info(f"sampler: {self.sampler_used} (--sampler auto: square-root sampling when the largest class has "
                 f"{LONG_TAIL_RATIO}x the photos of the smallest)")
        self.sampler = make_sampler(self.labels[self.train_ids], k, self.cfg)

    def set_train_side(self, side: int) -> None:
        """Progressive resizing: from the next batch on, training crops of the area of a ``side`` square
        (at the input's aspect), in the loader's workers too."""
        self.train_crop.size = shape_for(equal_area_height(side, self.pre.aspect), self.pre.aspect)

    def _dataset(self, ids: list[int], transform):
        if self.cache is not None:
            return CachedPhotos(self.cache, [self.digests[i] for i in ids], self.labels[ids], transform)
        return DecodedPhotos([self.records[i].path for i in ids], self.labels[ids], self.pre.resize_to, transform,
                             self.pre.interpolation, self.pre.resize_mode, self.pre.aspect)

    def train_eval_set(self):
        """The training photos with the validation view (no augmentation): their embeddings."""
        return self._dataset(self.train_ids, eval_transform(self.pre))

    def train_dataloader(self) -> DataLoader:
        # self-distillation remembers a prediction per photo: its batches say which photos they hold
        dataset = Indexed(self.train_set) if self.cfg.self_distill else self.train_set
        return loader(dataset, self.cfg.batch_size, self.workers, shuffle=True, sampler=self.sampler)

    def val_dataloader(self):
        # No validation split (--val-ratio 0): every photo trains and the last epoch is the model.
        return loader(self.val_set, max(self.cfg.batch_size, 64), self.workers) if self.val_set is not None else []

    @property
    def train_labels(self) -> np.ndarray:
        return self.labels[self.train_ids]

    @property
    def val_labels(self) -> np.ndarray:
        return self.labels[self.val_ids]

    @property
    def train_counts(self) -> np.ndarray:
        """Training photos per class, in class order (the sampler, the long-tail rules and the tau search)."""
        return np.bincount(self.train_labels, minlength=len(self.ds.classes))


def resolve_sampler(name: str, counts: np.ndarray, balance: int | None = None) -> str:
    """The sampler ``name`` stands for on training classes of these counts (auto: sqrt when
    long-tailed); --balance N draws every class alike whatever the name."""
    if balance:
        return "balanced"
    if name != "auto":
        return name
    return "sqrt" if imbalance_of(counts) >= LONG_TAIL_RATIO else "none"


def imbalance_of(counts: np.ndarray) -> float:
    """The largest class count over the smallest (classes with no photos left out; 1 when none)."""
    present = np.asarray(counts)[np.asarray(counts) > 0]
    return float(present.max() / present.min()) if len(present) else 1.0


def make_sampler(labels: np.ndarray, num_classes: int, cfg: FitConfig):
    """Class-balanced sampling (each class equally likely), square-root or fourth-root sampling (a
    class's share in proportion to that root of its count: rare classes seen more often, frequent
    ones still seen most), or --balance N: N draws per class per epoch."""
    counts = np.bincount(labels, minlength=num_classes)
    sampler = resolve_sampler(cfg.sampler, counts, cfg.balance)
    if sampler == "none":
        return None
    weights = np.asarray(counts[labels], dtype=np.float64) ** (SAMPLER_EXPONENTS[sampler] - 1.0)
    n = cfg.balance * int((counts > 0).sum()) if cfg.balance else len(labels)
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=n, replacement=True,
                                 generator=torch.Generator().manual_seed(cfg.seed))


def loader(dataset, batch_size: int, workers: int, shuffle: bool = False, sampler=None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=workers, persistent_workers=workers > 0, drop_last=False,
                      pin_memory=torch.cuda.is_available())
