"""The review decisions file, ``corrections.csv``: append-only, one row per decision, each flushed
and fsynced before it is acknowledged, so a closed tab or a killed server loses nothing that was
confirmed. An undo is a row of its own naming the decision it takes back; the state is the replay.

Rows: ``id`` (the client's id for the decision: a retried request is written once), ``time``,
``reviewer``, ``path``, ``action`` (accept, relabel, unknown, skip, undo), ``label`` (the label the
photo gets: the model's on accept, the chosen one on relabel, ``unknown``), ``model_label``,
``undoes`` (for undo: the id taken back).
"""

from __future__ import annotations

import csv
import io
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from wardrobe.data.sources import Dataset, Record
from wardrobe.errors import WardrobeError
from wardrobe.files import drop_partial_last_line
from wardrobe.ui import info

COLUMNS = ["id", "time", "reviewer", "path", "action", "label", "model_label", "undoes"]
ACTIONS = ("accept", "relabel", "unknown", "skip", "undo")
LABELLING = ("accept", "relabel", "unknown")  # the actions that give a photo its label


@dataclass
class Decision:
    id: str
    time: str
    reviewer: str
    path: str
    action: str
    label: str
    model_label: str
    undoes: str = ""


def read_decisions(path: Path) -> list[Decision]:
    """Every row of a corrections file, in order; a last line cut off mid-write is ignored."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    if rows[0] != COLUMNS:
        raise WardrobeError(f"{path}: not a wardrobe corrections file (its header is {','.join(rows[0])[:80]})")
    out = []
    for n, r in enumerate(rows[1:], 2):
        if len(r) != len(COLUMNS) or r[4] not in ACTIONS:
            raise WardrobeError(f"{path}: line {n} is not a corrections row")
        out.append(Decision(*r))
    return out


def current_state(decisions: list[Decision]) -> dict[str, Decision]:
    """{photo path: its standing decision} after replaying every row (undos take theirs back)."""
    undone = {d.undoes for d in decisions if d.action == "undo"}
    state: dict[str, Decision] = {}
    for d in decisions:
        if d.action != "undo" and d.id not in undone:
            state[d.path] = d
    return state


def human_labels(path: str | Path) -> dict[str, str]:
    """{photo path: label} of the standing accept / relabel / unknown decisions (skips are none)."""
    return {p: d.label for p, d in current_state(read_decisions(Path(path))).items() if d.action in LABELLING}


def apply_corrections(ds: Dataset, corrections: str | Path, keep_unknown: bool = False) -> Dataset:
    """The dataset with the review's human labels: a photo's label is replaced by its reviewer's, a
    reviewed photo that was not in the data joins the training split, and photos reviewed as
    ``unknown`` are dropped (or, with ``keep_unknown``, labelled as the class ``unknown``)."""
    path = Path(corrections).expanduser()
    if not path.is_file():
        raise WardrobeError(f"{path}: corrections file not found")
    human = {str(Path(p).resolve()): label for p, label in human_labels(path).items()}
    known = set(ds.classes) | ({"unknown"} if keep_unknown else set())
    foreign = sorted({label for label in human.values() if label not in known and label != "unknown"})
    if foreign:
        raise WardrobeError(f"{path}: labels not among the data's classes: {', '.join(foreign[:5])}")
    records, seen, changed, dropped = [], set(), 0, 0
    for r in ds.records:
        key = str(Path(r.path).resolve())
        seen.add(key)
        label = human.get(key, r.label)
        if label == "unknown" and not keep_unknown:
            dropped += 1
            continue
        changed += label != r.label
        records.append(replace(r, label=label))
    split = "train" if ds.has_splits else None
    added = [Record(Path(p), label, split) for p, label in sorted(human.items())
             if p not in seen and (label != "unknown" or keep_unknown) and Path(p).is_file()]
    info(f"corrections from {path}: {changed} labels changed, {len(added)} reviewed photos added, "
         f"{dropped} unknown photos dropped")
    return Dataset(records + added, ds.name, ds.skipped, dict(ds.description, corrections=str(path)))


class CorrectionLog:
    """The one writer of a corrections file. A lock serialises decisions from every request thread,
    so two reviewers never interleave half rows; each decision is on disk before ``add`` returns."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock = threading.Lock()
        self.decisions = read_decisions(self.path)
        self.ids = {d.id for d in self.decisions}
        if not self.path.is_file() or self.path.stat().st_size == 0:
            self._append([COLUMNS])
        else:
            drop_partial_last_line(self.path)

    def _append(self, rows: list[list[str]]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        with self.path.open("a", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())

    def state(self) -> dict[str, Decision]:
        with self.lock:
            return current_state(self.decisions)

    def add(self, d: Decision) -> tuple[bool, str]:
        """(written, why not). A repeated id is acknowledged without a second row; a photo that
        already has a standing decision by someone else is refused (their decision stands)."""
        with self.lock:
            if d.id in self.ids:
                return False, "duplicate"
            standing = current_state(self.decisions)
            if d.action == "undo":
                target = next((x for x in self.decisions if x.id == d.undoes), None)
                if target is None or standing.get(target.path) is not target:
                    return False, "nothing to undo"
                d.path, d.label, d.model_label = target.path, "", target.model_label
            elif d.path in standing and standing[d.path].action != "skip" and standing[d.path].reviewer != d.reviewer:
                return False, "decided by another reviewer"
            d.time = d.time or time.strftime("%Y-%m-%dT%H:%M:%S%z")
            self._append([[d.id, d.time, d.reviewer, d.path, d.action, d.label, d.model_label, d.undoes]])
            self.decisions.append(d)
            self.ids.add(d.id)
            return True, ""
