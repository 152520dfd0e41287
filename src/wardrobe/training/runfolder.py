"""Where a training run writes: a staging folder beside OUT, renamed onto OUT only when the run has
finished, so an overwrite, an interruption or a crash never leaves OUT holding old and new files
mixed, and a run folder a user already has is replaced only when they said so (``overwrite``).

An interrupted fine-tuning run keeps its staging folder (``OUT.partial``) with its checkpoints;
``resume`` continues it there."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from wardrobe.errors import WardrobeError
from wardrobe.files import is_secondary_process

MARKER = ".wardrobe-partial"  # inside a staging folder: wardrobe made it and may delete it
# The files by which a folder is recognised as a wardrobe run folder.
RUN_FILES = ("model.safetensors", "config.json", "metrics.json", "checkpoints", "cv.json", "cv_fold.json",
             "leaderboard.json", MARKER)


@dataclass
class RunResult:
    """What a training mode hands the run-folder writer (``wardrobe.training.train.write_run``)."""
    model: object            # the classifier network, head attached
    backbone: object         # wardrobe.models.registry.Backbone
    preprocess: object       # wardrobe.transforms.Preprocess the model expects
    head: str                # "linear" or "sqrt_linear"
    config: dict             # the mode's own section of config.json: {"fit": ...} or {"head": ..., "noise": ...}
    metrics: dict            # validation metrics ({} without a validation split)
    counts: dict             # photos used: {"train": n, "validation": n}
    epochs: list = field(default_factory=list)   # one row per epoch (probe: none)
    best_epoch: int | None = None  # the epoch with the best validation macro-F1 (without one: the last)
    model_epochs: list | None = None  # the epochs whose weights are the model: [best_epoch] or an average's
    overfitting: bool = False
    timings: dict = field(default_factory=dict)  # mode-specific timings beside total_seconds
    validation: tuple | None = None  # (probabilities, true class indices) of the validation photos
    embeddings: tuple | None = None  # (train, validation) pooled embeddings: the unknown-photo detector


def partial_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def is_run_folder(path: Path) -> bool:
    """A run, or a folder of runs (cross-validation folds, a comparison's models)."""
    def holds_run(p: Path) -> bool:
        return any((p / name).exists() for name in RUN_FILES)
    return path.is_dir() and (holds_run(path) or any(holds_run(p) for p in path.iterdir() if p.is_dir()))


def check_out(out: Path, overwrite: bool, resume: bool = False, what: str = "a model") -> None:
    """Refuse an OUT that would lose something: a run folder unless overwrite/resume, anything else
    that is not an empty folder always."""
    if out.exists() and not out.is_dir():
        raise WardrobeError(f"--out {out}: is a file, not a folder")
    work = partial_dir(out)
    if work.exists() and not (work / MARKER).is_file():
        raise WardrobeError(f"{work}: exists and was not made by wardrobe; move it away first")
    if (work / "checkpoints" / "last.ckpt").is_file() and not (overwrite or resume):
        raise WardrobeError(f"--out {out}: an interrupted run of it is in {work}; continue it with --resume, "
                            "or start again with --overwrite")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not is_run_folder(out):
        raise WardrobeError(f"--out {out}: the folder holds files that are not a wardrobe run; choose a new or "
                            "empty folder")
    if not (overwrite or resume):
        raise WardrobeError(f"--out {out}: already holds {what}; pass --overwrite to replace it"
                            + (" (or --resume to continue its training)" if what == "a model" else ""))


class RunFolder:
    """``with RunFolder(out, overwrite, resume) as work:`` write the run into ``work``; on a clean
    exit it becomes OUT (an older OUT is removed only after the new one is in place)."""

    def __init__(self, out: str | Path, overwrite: bool = False, resume: bool = False):
        self.out = Path(out)
        self.work = partial_dir(self.out)
        self.overwrite, self.resume = overwrite, resume
        # DDP ranks > 0 write into the staging folder rank 0 prepared; rank 0 alone renames it
        self.secondary = is_secondary_process()

    def resumable(self) -> bool:
        return (self.work / "checkpoints" / "last.ckpt").is_file()

    def __enter__(self) -> Path:
        if self.secondary:
            return self.work
        check_out(self.out, self.overwrite, self.resume)
        if self.resume:
            if not self.resumable():
                if not (self.out / "checkpoints" / "last.ckpt").is_file():
                    raise WardrobeError(f"--resume: no checkpoint to resume from "
                                        f"({self.work / 'checkpoints' / 'last.ckpt'} not found)")
                # a finished (or older wardrobe's) run: continue a copy, so OUT stays whole until the end
                self._remove_work()
                shutil.copytree(self.out, self.work)
        else:
            self._remove_work()
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / MARKER).touch()
        return self.work

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.secondary:
            return
        if exc_type is not None:
            # keep what --resume can continue; anything else of a failed run is of no use
            if not self.resumable():
                self._remove_work()
            return
        self.commit()

    def commit(self) -> None:
        (self.work / MARKER).unlink(missing_ok=True)
        old = self.out.with_name(f".{self.out.name}.replaced-{os.getpid()}")
        if self.out.exists():
            self.out.rename(old)  # the old run stays whole until the new one is in place
        self.work.rename(self.out)
        if old.exists():
            shutil.rmtree(old)

    def _remove_work(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
