"""Catalogue-scale labelling: stream any number of photos through the model and write each batch's
rows as soon as it is done (CSV, JSONL or JSON), with memory bounded by one batch.

Resuming after an interruption: the existing output is read back, a last line cut off mid-write is
dropped, and only photos not in it are labelled and appended, so nothing is lost and nothing is
written twice. Rows are flushed per batch, so an interruption loses at most the batch in flight.

Several devices or nodes (``devices``/``strategy``): Lightning's predict loop with one shard file
per rank (a BasePredictionWriter), merged in input order by rank 0 at the end.
"""

from __future__ import annotations

import csv
import heapq
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from wardrobe.data.loader import iter_pixel_batches
from wardrobe.errors import WardrobeError
from wardrobe.files import check_output_file, drop_partial_last_line
from wardrobe.inference.classifier import Classifier
from wardrobe.inference.predict import expand_paths
from wardrobe.inference.rows import FORMATS, RowWriter, csv_header, make_row
from wardrobe.ui import info, progress


@dataclass
class BatchSummary:
    written: int = 0          # rows written by this call
    failed: int = 0           # of which unreadable photos
    skipped: int = 0          # already in the output (--resume)
    total: int = 0            # photos named by the inputs
    seconds: float = 0.0
    output: str | None = None
    shards: list[str] = field(default_factory=list)
    rank: int = 0             # the process's rank in a multi-process run; only rank 0 reports

    @property
    def rate(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def guess_format(output: Path | None, fmt: str | None) -> str:
    if fmt is None:
        suffix = output.suffix.lower() if output else ""
        fmt = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}.get(suffix, "csv")
    if fmt not in FORMATS:
        raise WardrobeError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    return fmt


def done_paths(output: Path, fmt: str, top_k: int) -> set[str]:
    """Paths already in an output file (for --resume). Rows with an error count as done: the photo
    was tried, and its reason is in the file."""
    if fmt == "json":
        raise WardrobeError(f"{output}: --resume needs --format csv or jsonl (a JSON array cannot be appended to)")
    drop_partial_last_line(output)
    done: set[str] = set()
    with output.open(newline="") as f:
        if fmt == "csv":
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                return done
            if header != csv_header(top_k):
                raise WardrobeError(f"{output}: --resume: its columns ({len(header)}) do not match --top-k {top_k}; "
                                    "use the same --top-k as the interrupted run")
            for row in reader:
                if row:
                    done.add(row[0])
        else:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    done.add(json.loads(line)["path"])
                except (ValueError, KeyError, TypeError):
                    raise WardrobeError(f"{output}: --resume: line {n} is not a wardrobe JSONL row") from None
    return done


def _open_output(output: Path | None, fmt: str, top_k: int, resume: bool) -> tuple[IO[str], bool, set[str]]:
    if output is None:
        if resume:
            raise WardrobeError("--resume needs --output FILE (it reads back what was already written)")
        return sys.stdout, True, set()
    done: set[str] = set()
    exists = output.is_file() and output.stat().st_size > 0
    if resume and exists:
        done = done_paths(output, fmt, top_k)
        exists = output.stat().st_size > 0  # may have been emptied by dropping a partial line
    output.parent.mkdir(parents=True, exist_ok=True)
    stream = output.open("a" if resume else "w", newline="" if fmt == "csv" else None, encoding="utf-8")
    return stream, not (resume and exists), done


def label_photos(model, inputs: list[str | Path], output: str | Path | None = None, fmt: str | None = None,
                 top_k: int = 3, batch_size: int = 32, workers: int | None = None, resume: bool = False,
                 runtime: str = "auto", tta: bool = False, limit: int | None = None, show_progress: bool = True,
                 devices: int | str | None = None, strategy: str | None = None,
                 accelerator: str | None = None, overwrite: bool = False) -> BatchSummary:
    """Label the photos named by ``inputs`` (files, folders, globs) into ``output`` (stdout if None).
    An existing ``output`` is added to with ``resume``, replaced with ``overwrite``, else refused.

    ``limit`` labels at most that many new photos (a chunk of a long job; the rest with --resume).
    """


    out = Path(output).expanduser() if output else None
    fmt = guess_format(out, fmt)
    # The model first: a wrong model file is the error to report, whatever the photos are.
    clf = model if not isinstance(model, (str, Path)) else Classifier.load(model, runtime=runtime, tta=tta)
    if out is not None:
        check_output_file(out, fmt, overwrite, resume)
    files = [str(p) for p in expand_paths(inputs)]
    if not files:
        raise WardrobeError("no images to label")
    if devices not in (None, 1, "1") or strategy:
        return _label_distributed(model, files, out, fmt, top_k, batch_size, workers, resume, tta, limit,
                                  show_progress, devices, strategy, accelerator)
    top_k = max(1, min(top_k, len(clf.classes)))
    stream, fresh, done = _open_output(out, fmt, top_k, resume)
    todo = [p for p in files if p not in done]
    if limit is not None:
        todo = todo[:limit]
    summary = BatchSummary(total=len(files), skipped=len(files) - len([p for p in files if p not in done]),
                           output=str(out) if out else None)
    if done:
        info(f"resuming: {summary.skipped} of {len(files)} photos already in {out}")
    writer = RowWriter(stream, fmt, top_k, fresh)
    t0 = time.perf_counter()
    try:
        with progress(show_progress and len(todo) > batch_size) as bar:
            task = bar.add_task("label", total=len(todo), rate="")
            for rows in iter_rows(clf, todo, top_k, batch_size, workers):
                writer.write(rows)
                summary.written += len(rows)
                summary.failed += sum(r["error"] is not None for r in rows)
                el = time.perf_counter() - t0
                bar.update(task, advance=len(rows), rate=f"{summary.written / el:.0f} photos/s" if el else "")
        writer.close()
    finally:
        if stream is not sys.stdout:
            stream.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def iter_rows(clf, paths: list[str], top_k: int, batch_size: int = 32, workers: int | None = None,
              unknown: bool = False) -> Iterator[list[dict]]:
    """Rows of each batch, in input order, as the DataLoader workers deliver decoded photos;
    ``unknown`` adds each photo's unknown score and verdict (for models that have the detector)."""

    for idx, pixels, bad in iter_pixel_batches(paths, clf.preprocess, batch_size, workers):
        rows: dict[int, dict] = {}
        if len(idx):
            probs, scores = clf.scores_from_pixels(pixels, unknown=unknown)
            verdicts = clf.is_unknown(scores)
            for j, i in enumerate(idx.tolist()):
                rows[i] = make_row(paths[i], probs[j], clf.classes, top_k, None)
                if scores is not None:
                    rows[i]["unknown_score"], rows[i]["unknown"] = float(scores[j]), bool(verdicts[j])
        for i, reason in bad:
            rows[i] = make_row(paths[i], None, clf.classes, top_k, reason)
        yield [rows[i] for i in sorted(rows)]


# --- several devices: Lightning's predict loop, one shard per rank -------------------------------------------


def _label_distributed(*args) -> BatchSummary:
    from wardrobe.inference.distributed import label_distributed  # heavy: Lightning, only with --devices

    return label_distributed(*args)


def merge_shards(shards: list[Path], out: Path, fmt: str, top_k: int, append: bool) -> tuple[int, int]:
    """Merge rank shards (each sorted by input index) into OUT in input order, streaming; a photo that
    two ranks both labelled (a padded sampler) is written once."""
    streams = [s.open(encoding="utf-8") for s in shards]
    written = failed = 0
    try:
        def rows(f):
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    yield r["index"], r

        with out.open("a" if append else "w", newline="" if fmt == "csv" else None, encoding="utf-8") as dst:
            writer = RowWriter(dst, fmt, top_k, fresh=not append)
            last = None
            batch: list[dict] = []
            for i, r in heapq.merge(*(rows(f) for f in streams), key=lambda t: t[0]):
                if i == last:
                    continue
                last = i
                r["top_k"] = [(t[0], t[1]) for t in r["top_k"]]
                batch.append(r)
                written += 1
                failed += r["error"] is not None
                if len(batch) >= 256:
                    writer.write(batch)
                    batch = []
            writer.write(batch)
            writer.close()
    finally:
        for f in streams:
            f.close()
    return written, failed
