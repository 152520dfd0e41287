"""Photo fingerprints: one small record per photo (sizes, mode, content digest, 64-bit perceptual
hash, an 8x8 thumbnail), computed in worker processes and cached, and the duplicates they reveal
across the splits of a dataset (the train-time leakage warning).

Photos are streamed through a few worker processes; each comes back as a small record, never its
pixels, so memory grows by well under a kilobyte per photo however large the catalogue.
"""

from __future__ import annotations

import io
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from wardrobe.data.cache import EmbeddingCache, file_digest, triage
from wardrobe.data.hashing import (
    HASH_KIND,
    STRICT_PHASH_THRESHOLD,
    STRICT_THUMB_SIMILARITY,
    THUMB_SIDE,
    bytes_digest,
    hash_file,
    near_pairs,
)
from wardrobe.data.images import ImageError
from wardrobe.data.sources import Record
from wardrobe.settings import default_workers
from wardrobe.ui import progress

THUMB_BYTES = THUMB_SIDE * THUMB_SIDE * 3
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}



# --------------------------------------------------------------------------- scanning one photo

def scan_file(path: str) -> dict:
    """A small record of one photo: header facts, content digest and fingerprints, or the reason it
    cannot be used (the same reasons training gives, from ``wardrobe.data.images``)."""
    rec: dict = {"path": path}
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        rec["error"] = "missing file"
        return rec
    except OSError as exc:
        rec["error"] = f"cannot read file ({exc.strerror})"
        return rec
    rec["bytes"] = len(data)
    rec["digest"] = bytes_digest(data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            rec.update(format=im.format, mode=im.mode, width=im.size[0], height=im.size[1])
            orientation = im.getexif().get(0x0112)
            if orientation not in (None, 1):
                rec["orientation"] = int(orientation)
            if im.mode in ALPHA_MODES or (im.mode == "P" and "transparency" in im.info):
                rec["alpha"] = True
            if im.mode in ("RGB", "RGBA") and im.format == "PNG" and im.info.get("bits") == 16:
                rec["sixteen_bit"] = True
    except Exception:  # noqa: BLE001 - the decoder below names the problem
        pass
    del data
    try:
        phash, _, thumb = hash_file(path)
    except ImageError as exc:
        rec["error"] = exc.reason
        return rec
    rec["phash"] = phash
    rec["thumb"] = thumb.tobytes()
    return rec


def iter_scan(paths: Sequence[str], workers: int | None = None, show_progress: bool = True,
              description: str = "audit") -> Iterator[dict]:
    """``scan_file`` over ``paths`` in order, in ``workers`` processes (0: in this one), with a progress bar."""
    workers = default_workers() if workers is None else workers
    t0 = time.perf_counter()
    with progress(show_progress) as bar:
        task = bar.add_task(description, total=len(paths), rate="")
        if workers and len(paths) > 64:
            # fork: the workers share the parent's imported modules instead of importing them again.
            with get_context("fork").Pool(workers) as pool:
                for k, rec in enumerate(pool.imap(scan_file, [str(p) for p in paths], chunksize=16), 1):
                    yield rec
                    if k % 64 == 0 or k == len(paths):
                        bar.update(task, completed=k, rate=f"{k / max(time.perf_counter() - t0, 1e-9):.0f} photos/s")
        else:
            for k, p in enumerate(paths, 1):
                yield scan_file(str(p))
                bar.update(task, completed=k, rate=f"{k / max(time.perf_counter() - t0, 1e-9):.0f} photos/s")


# --------------------------------------------------------------------------- fingerprints, cached

def hash_cache() -> EmbeddingCache:
    return EmbeddingCache({"kind": HASH_KIND, "thumb_side": THUMB_SIDE})


def _to_vector(phash: int, thumb: bytes) -> np.ndarray:
    # Stored as float32 in the shared content-keyed cache; bytes 0-255 are exact in float32.
    return np.frombuffer(int(phash).to_bytes(8, "big") + thumb, dtype=np.uint8).astype(np.float32)


def _from_vector(v: np.ndarray) -> tuple[int, bytes]:
    b = v.astype(np.uint8).tobytes()
    return int.from_bytes(b[:8], "big"), b[8:]


@dataclass
class Fingerprints:
    """Per path: content digest (None: unreadable), pHash and thumbnail (None: not decodable)."""

    digests: list[str | None]
    phashes: list[int | None]
    thumbs: np.ndarray  # [N, THUMB_BYTES] uint8, zeros where there is no thumbnail
    errors: dict[int, str] = field(default_factory=dict)


def fingerprints(paths: Sequence[str | Path], workers: int | None = None, show_progress: bool = False) -> Fingerprints:
    """Digest and perceptual fingerprints of many photos, reusing the on-disk cache keyed by content,
    so a second call costs one read of each file."""

    cache = hash_cache()
    n = len(paths)
    digests = [file_digest(p) for p in paths]
    phashes: list[int | None] = [None] * n
    thumbs = np.zeros((n, THUMB_BYTES), dtype=np.uint8)
    todo, errors = triage(paths, digests, cache.feats, cache.bad)
    for i, d in enumerate(digests):
        if d in cache.feats:
            phashes[i], th = _from_vector(cache.feats[d])
            thumbs[i] = np.frombuffer(th, dtype=np.uint8)
    if todo:
        for i, rec in zip(todo, iter_scan([str(paths[i]) for i in todo], workers, show_progress, "fingerprints")):
            remember(cache, rec)
            if "phash" in rec:
                phashes[i] = rec["phash"]
                thumbs[i] = np.frombuffer(rec["thumb"], dtype=np.uint8)
            else:
                errors[i] = rec.get("error", "cannot decode image")
        cache.flush()
    return Fingerprints(digests, phashes, thumbs, errors)


def remember(cache: EmbeddingCache, rec: dict) -> None:
    d = rec.get("digest")
    if d is None:
        return
    if "phash" in rec:
        cache.put(d, _to_vector(rec["phash"], rec["thumb"]))
    elif rec.get("error"):
        cache.put_bad(d, rec["error"])


# --------------------------------------------------------------------------- leakage across splits

def split_leakage(records: Sequence[Record], workers: int | None = None, show_progress: bool = False,
                  phash_threshold: int = STRICT_PHASH_THRESHOLD,
                  min_similarity: float = STRICT_THUMB_SIMILARITY) -> dict:
    """Photos in train that are exact or near duplicates of photos in validation/test.

    Returns counts and the pairs: ``exact`` (identical bytes) and ``near`` (perceptual match under the
    strict rule, right 99.6% of the time on real clothing photos, bench/near_duplicates.py --real).
    Cheap on a second call: fingerprints are cached by content digest.
    """
    recs = [r for r in records if r.split]
    fp = fingerprints([r.path for r in recs], workers, show_progress)
    is_train = np.array([r.split == "train" for r in recs])
    exact: list[tuple[int, int]] = []
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(fp.digests):
        if d is not None:
            by_digest[d].append(i)
    for members in by_digest.values():
        tr = [i for i in members if is_train[i]]
        ev = [i for i in members if not is_train[i]]
        exact.extend((a, b) for a in tr for b in ev)
    ok = [i for i, ph in enumerate(fp.phashes) if ph is not None]
    near = []
    if ok:
        pairs = near_pairs([fp.phashes[i] for i in ok], fp.thumbs[ok], phash_threshold, min_similarity)
        for a, b in pairs:
            i, j = ok[a], ok[b]
            if is_train[i] != is_train[j] and fp.digests[i] != fp.digests[j]:
                near.append((i, j) if is_train[i] else (j, i))
    eval_exact = {b for _, b in exact}
    eval_near = {b for _, b in near}
    return {
        "exact_pairs": len(exact), "near_pairs": len(near),
        "eval_photos_with_exact_twin_in_train": len(eval_exact),
        "eval_photos_with_near_twin_in_train": len(eval_near - eval_exact),
        "exact": [(str(recs[a].path), str(recs[b].path)) for a, b in exact],
        "near": [(str(recs[a].path), str(recs[b].path)) for a, b in near],
    }


def leakage_message(report: dict) -> str | None:
    """One line for ``train`` and ``cv``, or None when nothing crosses the split."""
    if not report["exact_pairs"] and not report["near_pairs"]:
        return None
    return (f"duplicates cross the split: {report['eval_photos_with_exact_twin_in_train']} validation/test photos "
            f"have an identical photo in train ({report['exact_pairs']} pairs), "
            f"{report['eval_photos_with_near_twin_in_train']} more a near duplicate ({report['near_pairs']} pairs); "
            "metrics will read high - run 'wardrobe data audit' to see them")


# --------------------------------------------------------------------------- the audit

