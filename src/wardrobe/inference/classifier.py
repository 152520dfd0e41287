"""A trained model, loaded from its file, ready to label photos."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from wardrobe.data.cache import file_digest
from wardrobe.data.images import ImageError, _to_rgb, load_image
from wardrobe.data.loader import iter_pixel_batches
from wardrobe.errors import WardrobeError
from wardrobe.inference.onnxfile import OnnxFileRunner, read_onnx_meta
from wardrobe.inference.rows import make_row
from wardrobe.metrics import softmax
from wardrobe.models.heads import LogitsAndEmbedding, has_embedding
from wardrobe.models.modelfile import load_extras, load_model, resolve_model_path
from wardrobe.models.runtime import make_runner, resolve_runtime
from wardrobe.transforms import Preprocess
from wardrobe.ui import progress
from wardrobe.unknown import knn_scores


class Classifier:
    def __init__(self, model: torch.nn.Module | None, meta: dict, runtime: str = "auto", key: dict | None = None,
                 tta: bool = False, runner=None, bank: np.ndarray | None = None):
        self.model = model
        # The unknown-photo detector: training embeddings and the threshold fitted on validation.
        self.bank = bank if bank is not None and meta.get("unknown") and has_embedding(model) else None
        self.unknown = dict(meta["unknown"]) if self.bank is not None else None
        self.tta = tta  # test-time augmentation: average the photo and its mirror image
        self.meta = meta
        self.classes: list[str] = list(meta["classes"])
        self.preprocess = Preprocess.from_dict(meta["preprocess"])
        self.temperature = float(meta.get("temperature", 1.0))
        self._key = key or {"model": id(model)}
        self._runtime = runtime
        self._runner = runner  # None: made on first use from the model (ONNX Runtime or PyTorch)

    @classmethod
    def load(cls, path: str | Path, runtime: str = "auto", tta: bool = False) -> "Classifier":
        """A run folder, a model file (.safetensors) or an exported .onnx file."""
        p = Path(path).expanduser()
        if p.suffix.lower() == ".onnx":
            return cls._load_onnx(p, runtime, tta)
        p = resolve_model_path(p)
        model, meta = load_model(p)
        bank = load_extras(p).get("unknown_bank") if meta.get("unknown") else None
        return cls(model, meta, runtime, key={"model_file": file_digest(p)}, tta=tta,
                   bank=bank.float().numpy() if bank is not None else None)

    @classmethod
    def _load_onnx(cls, p: Path, runtime: str, tta: bool) -> "Classifier":
        if runtime == "torch":
            raise WardrobeError(f"{p}: an exported ONNX file runs in ONNX Runtime only; drop --runtime torch "
                                "or pass the run folder")
        resolve_runtime("onnx")  # one clear line when onnxruntime is missing
        meta = read_onnx_meta(p)
        try:
            runner = OnnxFileRunner(p, quantization=meta["quantization"])
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types on a bad graph
            raise WardrobeError(f"{p}: ONNX Runtime cannot load this file ({str(exc).splitlines()[0][:200]})") from None
        return cls(None, meta, runtime="onnx", key={"onnx_file": file_digest(p)}, tta=tta, runner=runner)

    @property
    def runner(self):
        if self._runner is None:
            if self.bank is not None:
                self._runner = make_runner(LogitsAndEmbedding(self.model), self.preprocess.hw, self._key,
                                           self._runtime, outputs=2)
            else:
                self._runner = make_runner(self.model, self.preprocess.hw, self._key, self._runtime)
        return self._runner

    def probs_from_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        return self.scores_from_pixels(pixels, unknown=False)[0]

    def is_unknown(self, scores: np.ndarray | None) -> np.ndarray | None:
        return None if scores is None or self.unknown is None else scores > self.unknown["threshold"]

    def scores_from_pixels(self, pixels: torch.Tensor, unknown: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities, unknown scores or None when the model has no unknown detector or
        ``unknown`` is False: the nearest-neighbour search is skipped where nobody reads it)."""
        # NumPy around the runner, not torch: a torch op wakes torch's OpenMP pool, whose threads
        # keep spinning for a while afterwards and take the 2 cores ONNX Runtime is about to use
        # (single-photo latency 17 ms -> 9 ms here, bench/serve_bench.py).
        x = self.preprocess.normalize_array(pixels.numpy())
        if self.tta:
            x = np.concatenate([x, x[..., ::-1]])
        out = self.runner(torch.from_numpy(np.ascontiguousarray(x)))
        logits, emb = (out if self.bank is not None else (out, None))
        probs = softmax(np.asarray(logits, dtype=np.float32), self.temperature)
        n = len(pixels)
        if self.tta:
            probs = 0.5 * (probs[:n] + probs[n:])
            emb = None if emb is None else 0.5 * (emb[:n] + emb[n:])
        scores = None if emb is None or not unknown else knn_scores(self.bank, emb, int(self.unknown.get("k", 1)))
        return probs.astype(np.float32), scores

    def predict_proba(self, paths: Sequence[str | Path], batch_size: int = 32, workers: int | None = None,
                      show_progress: bool = True, description: str = "predict") -> tuple[np.ndarray, dict[int, str]]:
        """Probabilities [N, classes] (NaN rows where a file failed) and {index: reason}."""
        probs, _, errors = self.predict_scores(paths, batch_size, workers, show_progress, description, unknown=False)
        return probs, errors

    def predict_scores(self, paths: Sequence[str | Path], batch_size: int = 32, workers: int | None = None,
                       show_progress: bool = True, description: str = "predict", unknown: bool = True):
        """(probabilities, unknown scores or None, {index: reason}); NaN rows where a file failed."""
        out = np.full((len(paths), len(self.classes)), np.nan, dtype=np.float32)
        scores = np.full(len(paths), np.nan, dtype=np.float32) if self.bank is not None and unknown else None
        errors: dict[int, str] = {}
        with progress(show_progress and len(paths) > batch_size) as bar:
            task = bar.add_task(description, total=len(paths), rate="")
            for idx, pixels, bad in iter_pixel_batches(paths, self.preprocess, batch_size, workers):
                errors.update(dict(bad))
                if len(idx):
                    probs, s = self.scores_from_pixels(pixels, unknown=scores is not None)
                    out[idx.numpy()] = probs
                    if scores is not None:
                        scores[idx.numpy()] = s
                bar.update(task, advance=len(idx) + len(bad))
        return out, scores, errors

    def predict(self, images: Sequence[str | Path | Image.Image], top_k: int = 3, batch_size: int = 32,
                show_progress: bool = False) -> list[dict]:
        """One dict per image: ``label``, ``prob``, ``top_k`` [(label, prob)...], ``error``."""
        top_k = max(1, min(top_k, len(self.classes)))
        results: list[dict] = [{} for _ in images]
        paths = [(i, p) for i, p in enumerate(images) if not isinstance(p, Image.Image)]
        pil = [(i, p) for i, p in enumerate(images) if isinstance(p, Image.Image)]
        probs = np.full((len(images), len(self.classes)), np.nan, dtype=np.float32)
        errors: dict[int, str] = {}
        if paths:
            p, e = self.predict_proba([p for _, p in paths], batch_size, show_progress=show_progress)
            for j, (i, _) in enumerate(paths):
                probs[i] = p[j]
                if j in e:
                    errors[i] = e[j]
        for start in range(0, len(pil), batch_size):
            chunk = pil[start:start + batch_size]
            pixels = torch.stack([self.preprocess.pixels(_rgb(img)) for _, img in chunk])
            probs[[i for i, _ in chunk]] = self.probs_from_pixels(pixels)
        for i, img in enumerate(images):
            name = getattr(img, "filename", None) or ("<image>" if isinstance(img, Image.Image) else str(img))
            results[i] = make_row(name, None if i in errors else probs[i], self.classes, top_k, errors.get(i))
        return results


def _rgb(img: Image.Image) -> Image.Image:

    return _to_rgb(ImageOps.exif_transpose(img))


__all__ = ["Classifier", "ImageError", "load_image"]
