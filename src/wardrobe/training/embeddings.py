"""Embeddings of a frozen backbone, extracted once and cached by file content."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from wardrobe.data.cache import EmbeddingCache, file_digest, triage
from wardrobe.data.loader import iter_pixel_batches
from wardrobe.models.registry import Backbone
from wardrobe.models.runtime import make_runner
from wardrobe.ui import info, progress


def embedding_cache_key(backbone: Backbone, noise: float = 0.0, noise_seed: int = 0) -> dict:
    key = {"backbone": backbone.name, "arch": backbone.arch, "weights": backbone.weights,
           "preprocess": backbone.preprocess.to_dict(), "kind": "pooled-embedding-v2"}  # v2: two-step centre crop
    if levels := getattr(backbone.model, "wardrobe_levels", 0):
        key |= {"levels": levels}
    if noise:
        key |= {"noise": float(noise), "noise_seed": int(noise_seed)}
    return key


def add_pixel_noise(pixels: torch.Tensor, sigma: float, digests: Sequence[str], seed: int = 0) -> torch.Tensor:
    """Gaussian noise of this sigma on pixels scaled to [0, 1], clipped, back on the 0-255 scale.
    Each photo's noise is seeded by its content hash, so a cached noisy embedding is reproducible."""
    out = pixels.to(torch.float32) / 255.0
    for j, d in enumerate(digests):
        g = torch.Generator().manual_seed((int(d[:12], 16) + seed) % (2 ** 63))
        out[j] += sigma * torch.randn(out[j].shape, generator=g)
    return out.clamp_(0.0, 1.0) * 255.0


def extract_embeddings(paths: Sequence[str | Path], backbone: Backbone, batch_size: int = 32,
                       workers: int | None = None, runtime: str = "auto", use_cache: bool = True,
                       show_progress: bool = True, noise: float = 0.0,
                       noise_seed: int = 0) -> tuple[np.ndarray, dict[int, str], dict]:
    """Returns (embeddings [N, D] with NaN rows for failed files, {index: reason}, stats).
    ``noise``: embeddings of copies with Gaussian pixel noise of this sigma (cached separately)."""
    t0 = time.perf_counter()
    n = len(paths)
    dim = backbone.num_features
    out = np.full((n, dim), np.nan, dtype=np.float32)
    cache = EmbeddingCache(embedding_cache_key(backbone, noise, noise_seed)) if use_cache else None
    digests = [file_digest(p) for p in paths]
    todo, errors = triage(paths, digests, cache.feats if cache else {}, cache.bad if cache else {})
    for i, d in enumerate(digests):
        if cache is not None and d in cache.feats:
            out[i] = cache.feats[d]
    hits = n - len(todo) - sum(1 for i in errors if digests[i] is None)
    if todo:
        what = f"noisy (sigma {noise}) " if noise else ""
        info(f"extracting {backbone.name} {what}embeddings for {len(todo)} photos ({hits} cached)")
        # The network (and its ONNX export) does not depend on the noise: one export serves both.
        key = embedding_cache_key(backbone)
        runner = make_runner(backbone.model, backbone.preprocess.hw, key, runtime)
        done = 0
        t1 = time.perf_counter()
        with progress(show_progress) as bar:
            task = bar.add_task("noisy embeddings" if noise else "embeddings", total=len(todo), rate="")
            for idx, pixels, bad in iter_pixel_batches([paths[i] for i in todo], backbone.preprocess,
                                                       batch_size, workers):
                for j, reason in bad:
                    i = todo[j]
                    errors[i] = reason
                    if cache is not None:
                        cache.put_bad(digests[i], reason)
                if len(idx):
                    if noise:
                        pixels = add_pixel_noise(pixels, noise, [digests[todo[j]] for j in idx.tolist()], noise_seed)
                    feats = runner(torch.from_numpy(backbone.preprocess.normalize_array(pixels.numpy()))).reshape(len(idx), -1)
                    for j, vec in zip(idx.tolist(), feats):
                        i = todo[j]
                        out[i] = vec
                        if cache is not None:
                            cache.put(digests[i], vec)
                done += len(idx) + len(bad)
                bar.update(task, advance=len(idx) + len(bad),
                           rate=f"{done / max(time.perf_counter() - t1, 1e-9):.0f} photos/s")
                # Flush now and then so an interrupted extraction keeps what it finished.
                if cache is not None and cache.pending >= 1024:
                    cache.flush()
        if cache is not None:
            cache.flush()
    stats = {"n": n, "cached": hits, "extracted": len(todo), "seconds": round(time.perf_counter() - t0, 2)}
    return out, errors, stats
