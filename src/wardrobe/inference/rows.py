"""Result rows, built in one place: one per photo (label, prob, top-k, or the error), and the
writer that streams them as CSV, JSONL or a JSON array."""

from __future__ import annotations

import csv
import json
from typing import IO

import numpy as np

FORMATS = ("csv", "jsonl", "json")


def csv_header(top_k: int) -> list[str]:
    return ["path", *[f"{k}{i}" for i in range(1, top_k + 1) for k in ("label_", "prob_")], "error"]


def make_row(path: str, probs: np.ndarray | None, classes: list[str], top_k: int, error: str | None) -> dict:
    if error is not None:
        return {"path": path, "label": None, "prob": None, "top_k": [], "error": error}
    order = np.argsort(-probs)[:top_k]
    top = [(classes[c], float(probs[c])) for c in order]
    return {"path": path, "label": top[0][0], "prob": top[0][1], "top_k": top, "error": None}


class RowWriter:
    """Writes rows in one of FORMATS to an open text stream, flushing after every ``write``."""

    def __init__(self, stream: IO[str], fmt: str, top_k: int, fresh: bool):
        self.stream, self.fmt, self.top_k = stream, fmt, top_k
        self._csv = csv.writer(stream) if fmt == "csv" else None
        self._first = True
        if fresh and fmt == "csv":
            self._csv.writerow(csv_header(top_k))
        if fmt == "json":
            stream.write("[")

    def _json(self, r: dict) -> dict:
        return {"path": r["path"], "label": r["label"], "prob": r["prob"],
                "top_k": [{"label": l, "prob": p} for l, p in r["top_k"]], "error": r["error"]}

    def write(self, rows: list[dict]) -> None:
        for r in rows:
            if self.fmt == "csv":
                cells = []
                for i in range(self.top_k):
                    cells += ([r["top_k"][i][0], f"{r['top_k'][i][1]:.6f}"] if i < len(r["top_k"]) else ["", ""])
                self._csv.writerow([r["path"], *cells, r["error"] or ""])
            elif self.fmt == "jsonl":
                self.stream.write(json.dumps(self._json(r)) + "\n")
            else:
                self.stream.write(("\n  " if self._first else ",\n  ") + json.dumps(self._json(r)))
            self._first = False
        self.stream.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write("\n]\n" if not self._first else "]\n")
        self.stream.flush()
