"""On-disk caches keyed by file content: embeddings (and whatever else is costly to recompute).

Entries are appended as new shard files and never rewritten, so an interrupted run keeps what it
finished and two runs never corrupt each other's writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    env = os.environ.get("WARDROBE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wardrobe"


def file_digest(path: str | Path) -> str | None:
    """Content hash of a file, or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return hashlib.blake2b(f.read(), digest_size=16).hexdigest()
    except OSError:
        return None


def unreadable_reason(path: str | Path) -> str:
    """Why file_digest gave None, in the words of the skip reports."""
    return "missing file" if not Path(path).exists() else "cannot read file"


def key_digest(obj) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()


class EmbeddingCache:
    """digest -> embedding vector, plus digest -> reason for files that failed to decode."""

    def __init__(self, key: dict, root: Path | None = None):
        self.key = key
        self.dir = (root or cache_dir()) / "embeddings" / key_digest(key)
        self.feats: dict[str, np.ndarray] = {}
        self.bad: dict[str, str] = {}
        self._pending_feats: dict[str, np.ndarray] = {}
        self._pending_bad: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        def read(path: Path) -> tuple:
            with np.load(path, allow_pickle=False) as z:
                return z["digests"], z["feats"], z["bad_digests"], z["bad_reasons"]

        for digests, feats, bad_digests, reasons in read_shards(self.dir, "part-*.npz", read):
            self.feats.update((str(d), v) for d, v in zip(digests, feats))
            self.bad.update((str(d), str(r)) for d, r in zip(bad_digests, reasons))

    def __contains__(self, digest: str) -> bool:
        return digest in self.feats or digest in self.bad

    @property
    def pending(self) -> int:
        return len(self._pending_feats) + len(self._pending_bad)

    def put(self, digest: str, vector: np.ndarray) -> None:
        self.feats[digest] = vector
        self._pending_feats[digest] = vector

    def put_bad(self, digest: str, reason: str) -> None:
        self.bad[digest] = reason
        self._pending_bad[digest] = reason

    def flush(self) -> None:
        if not self._pending_feats and not self._pending_bad:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "key.json").write_text(json.dumps(self.key, indent=2, default=str))
        digests = list(self._pending_feats)
        feats = (np.stack([self._pending_feats[d] for d in digests]) if digests
                 else np.zeros((0, 0), dtype=np.float32))
        bad = list(self._pending_bad)
        name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:6]}"
        tmp = self.dir / f".{name}.npz"
        with open(tmp, "wb") as f:
            np.savez(f, digests=np.array(digests, dtype="U32"), feats=feats.astype(np.float32),
                     bad_digests=np.array(bad, dtype="U32"),
                     bad_reasons=np.array([self._pending_bad[d] for d in bad], dtype=str))
        os.replace(tmp, self.dir / f"{name}.npz")
        self._pending_feats.clear()
        self._pending_bad.clear()


def triage(paths: Sequence[str | Path], digests: Sequence[str | None], cached: Container[str],
           bad: Mapping[str, str]) -> tuple[list[int], dict[int, str]]:
    """The one cache lookup: (indices of photos still to compute, {index: reason} for photos that
    are unreadable now or failed when they were cached). Indices in ``cached`` are neither."""
    todo: list[int] = []
    errors: dict[int, str] = {}
    for i, d in enumerate(digests):
        if d is None:
            errors[i] = unreadable_reason(paths[i])
        elif d in bad:
            errors[i] = bad[d]
        elif d not in cached:
            todo.append(i)
    return todo, errors


def read_shards(folder: Path, pattern: str, read: Callable[[Path], object]) -> Iterator:
    """``read(path)`` of each shard in ``folder`` matching ``pattern``, in name order; a shard cut
    short by a crash is passed over (its entries are simply computed again)."""
    if not folder.is_dir():
        return
    for shard in sorted(folder.glob(pattern)):
        try:
            yield read(shard)
        except (OSError, ValueError, KeyError):
            continue
