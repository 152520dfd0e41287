"""Fixtures that make their own small photos; real data is read only by tests marked slow."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLOURS = {"circle": (220, 40, 40), "square": (40, 90, 220), "triangle": (30, 170, 60)}


def shape_image(kind: str, seed: int, size: int = 96) -> Image.Image:
    """A coloured shape on a noisy light background; each class has its own shape and colour."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(200, 256, size=(size, size, 3), dtype=np.uint8)
    img = Image.fromarray(bg)
    d = ImageDraw.Draw(img)
    c = size // 2 + int(rng.integers(-8, 9))
    r = size // 3 + int(rng.integers(-5, 6))
    colour = tuple(int(v + rng.integers(-20, 21)) for v in COLOURS[kind])
    if kind == "circle":
        d.ellipse([c - r, c - r, c + r, c + r], fill=colour)
    elif kind == "square":
        d.rectangle([c - r, c - r, c + r, c + r], fill=colour)
    else:
        d.polygon([(c, c - r), (c - r, c + r), (c + r, c + r)], fill=colour)
    return img


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Each test session gets its own cache so tests never see (or pollute) a user's cache."""
    old = os.environ.get("WARDROBE_CACHE_DIR")
    os.environ["WARDROBE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["WARDROBE_QUIET"] = "1"
    yield
    if old is None:
        os.environ.pop("WARDROBE_CACHE_DIR", None)
    else:
        os.environ["WARDROBE_CACHE_DIR"] = old


def make_folder_dataset(root: Path, per_class: int = 12, shapes=SHAPES, size: int = 96) -> Path:
    for k, kind in enumerate(shapes):
        d = root / kind
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape_image(kind, seed=1000 * k + i, size=size).save(d / f"{kind}_{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    return make_folder_dataset(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="session")
def trained_run(shapes_dir, tmp_path_factory) -> Path:
    """One probe model trained once on the shapes, shared by evaluation and prediction tests."""
    from wardrobe import train

    out = tmp_path_factory.mktemp("run")
    train(shapes_dir, out, val_ratio=0.25, seed=0, workers=0, show_progress=False)
    return out


def real_data_root() -> Path | None:
    root = os.environ.get("WARDROBE_DATA_DIR")
    if root and (Path(root) / "clothing-dataset" / "top10-split.csv").is_file():
        return Path(root)
    return None


def interrupt_at_second_epoch():
    """A Lightning callback that presses Ctrl+C at the start of the second epoch, once the first
    one's checkpoint is written."""
    import lightning as L

    class Interrupt(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 1:
                raise KeyboardInterrupt

    return Interrupt()
