"""`wardrobe review DIR`: the review queue of `wardrobe label` (DIR/review.csv) as a web page.
A person decides each photo by keyboard; every decision goes to DIR/corrections.csv (see
wardrobe.data.corrections) before the page is told it is saved.

Only the photos listed in review.csv are ever read, by their row number, never by a path from a
request."""

from __future__ import annotations

import csv
import json
from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from wardrobe.data.corrections import ACTIONS, CorrectionLog, Decision
from wardrobe.data.images import ImageError, thumbnail_jpeg
from wardrobe.errors import WardrobeError
from wardrobe.ui import info

STATIC = Path(__file__).parent / "static"
THUMB = 320


class DecisionIn(BaseModel):
    id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    reviewer: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    index: int | None = Field(default=None, ge=0)
    action: str
    label: str = Field(default="", max_length=200)
    undoes: str = Field(default="", max_length=64)


class ReviewQueue:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        review = self.folder / "review.csv"
        if not review.is_file():
            raise WardrobeError(f"{review}: no review queue here (write one with `wardrobe label MODEL PHOTOS --out DIR`"
                                " or `wardrobe data audit ... --queue DIR`)")
        with review.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if rows and "path" not in rows[0]:
            raise WardrobeError(f"{review}: not a wardrobe review queue (no path column)")
        self.items = [self._item(i, r) for i, r in enumerate(rows)]
        summary = self.folder / "summary.json"
        classes = list(json.loads(summary.read_text()).get("classes") or []) if summary.is_file() else []
        self.classes = classes or sorted({it["label"] for it in self.items if it["label"] not in ("", "unknown")}
                                         | {t[0] for it in self.items for t in it["top"]})
        self.log = CorrectionLog(self.folder / "corrections.csv")
        self.by_path = {it["path"]: it for it in self.items}

    @staticmethod
    def _item(i: int, r: dict) -> dict:
        top = []
        model_label = r.get("model_label") or r.get("label", "")
        if model_label and model_label != "unknown":
            top.append((model_label, float(r["prob"]) if r.get("prob") else None))
        for k in (2, 3):
            if r.get(f"label_{k}"):
                top.append((r[f"label_{k}"], float(r[f"prob_{k}"]) if r.get(f"prob_{k}") else None))
        return {"index": i, "path": r["path"], "name": Path(r["path"]).name, "label": r.get("label", ""),
                "model_label": model_label, "top": top, "unknown": r.get("label") == "unknown",
                "error": r.get("error") or "", "reason": r.get("reason", "")}

    def snapshot(self) -> dict:
        state = self.log.state()
        items = []
        for it in self.items:
            d = state.get(it["path"])
            items.append({**it, "decision": None if d is None else
                          {"id": d.id, "action": d.action, "label": d.label, "reviewer": d.reviewer}})
        return {"classes": self.classes, "items": items, "decided": self._decided(state), "total": len(items)}

    def _decided(self, state: dict) -> int:
        """Queue photos with a standing decision (a skip is none)."""
        return sum(1 for path, d in state.items() if d.action != "skip" and path in self.by_path)

    def decide(self, body: DecisionIn) -> dict:
        if body.action not in ACTIONS:
            raise HTTPException(422, f"action must be one of {', '.join(ACTIONS)}")
        if body.action == "undo":
            d = Decision(body.id, "", body.reviewer, "", "undo", "", "", body.undoes)
        else:
            if body.index is None or body.index >= len(self.items):
                raise HTTPException(404, "no such photo in the queue")
            it = self.items[body.index]
            label = {"accept": it["model_label"], "unknown": "unknown", "skip": ""}.get(body.action, body.label)
            if body.action == "relabel" and label not in self.classes:
                raise HTTPException(422, f"unknown label {label!r}")
            if body.action == "accept" and not label:
                raise HTTPException(422, "this photo has no model label to accept")
            d = Decision(body.id, "", body.reviewer, it["path"], body.action, label, it["model_label"])
        written, why = self.log.add(d)
        # the counts only: the whole queue with its decisions is what GET /api/queue is for
        return {"written": written, "reason": why, "decided": self._decided(self.log.state()),
                "total": len(self.items)}

    def thumbnail(self, index: int) -> bytes:
        if not 0 <= index < len(self.items):
            raise HTTPException(404, "no such photo in the queue")
        return _thumb(self.items[index]["path"])


@lru_cache(maxsize=512)
def _thumb(path: str) -> bytes:
    try:
        return thumbnail_jpeg(path, THUMB, quality=85)
    except (ImageError, OSError) as exc:
        raise HTTPException(422, f"{Path(path).name}: {exc}") from None


def create_review_app(folder: str | Path, explain=None) -> FastAPI:
    """``explain``: optional callable(photo path) -> PNG bytes of a heat-map overlay."""
    queue = ReviewQueue(Path(folder))
    app = FastAPI(title="wardrobe review", docs_url=None, redoc_url=None)
    page = (STATIC / "review.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/queue")
    def get_queue() -> dict:
        return {**queue.snapshot(), "explain": explain is not None}

    @app.post("/api/decide")
    def decide(body: DecisionIn) -> dict:
        return queue.decide(body)

    @app.get("/api/photo/{index}")
    def photo(index: int) -> Response:
        return Response(queue.thumbnail(index), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/explain/{index}")
    def explain_photo(index: int) -> Response:
        if explain is None:
            raise HTTPException(404, "start the review with --model to see explanations")
        if not 0 <= index < len(queue.items):
            raise HTTPException(404, "no such photo in the queue")
        return Response(explain(queue.items[index]["path"]), media_type="image/png")

    return app


def review(folder: str | Path, host: str = "127.0.0.1", port: int = 8001, model: str | Path | None = None) -> None:
    import uvicorn  # optional at import: uvicorn, only when serving

    explain = None
    if model is not None:
        from wardrobe.inference.explain import Explainer  # heavy: grad-cam, only with --model

        explain = Explainer.load(model).overlay_png
    app = create_review_app(folder, explain)
    info(f"review queue of {folder} on http://{host}:{port}/ (decisions go to {Path(folder) / 'corrections.csv'})")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=5)
