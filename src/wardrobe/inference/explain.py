"""Why the model said what it said: Grad-CAM heat maps (the ``grad-cam`` package) over the photo as
the model sees it (its centre crop), for fine-tuned and probe models alike: a probe's head is a
linear layer on the pooled features, so the gradient reaches the last convolution just the same."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wardrobe.data.images import load_image
from wardrobe.errors import WardrobeError
from wardrobe.inference.predict import expand_paths
from wardrobe.models.modelfile import load_model, resolve_model_path
from wardrobe.transforms import Preprocess


def last_conv(model: torch.nn.Module) -> torch.nn.Module:
    """The layer Grad-CAM reads: timm's head convolution block where there is one, else the last
    convolution of the network."""
    for name in ("bn2", "conv_head"):
        if hasattr(model, name) and not isinstance(getattr(model, name), torch.nn.Identity):
            return getattr(model, name)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise WardrobeError("this network has no convolution for Grad-CAM")
    return convs[-1]


class Explainer:
    def __init__(self, model: torch.nn.Module, meta: dict):
        from pytorch_grad_cam import GradCAM  # heavy: grad-cam (and OpenCV), only when explaining

        self.model = model.eval().float()
        self.classes = list(meta["classes"])
        self.preprocess = Preprocess.from_dict(meta["preprocess"])
        self.cam = GradCAM(model=self.model, target_layers=[last_conv(self.model)])

    @classmethod
    def load(cls, path: str | Path) -> "Explainer":
        p = Path(path).expanduser()
        if p.suffix.lower() == ".onnx":
            raise WardrobeError(f"{p}: Grad-CAM needs the network's gradients: pass the run folder or model file, "
                                "not an ONNX export")
        model, meta = load_model(resolve_model_path(p))
        return cls(model, meta)

    def explain(self, photo: str | Path | Image.Image, target: str | None = None) -> dict:
        """{"label", "prob", "target", "heatmap" (HxW in [0, 1]), "view" (HxWx3 uint8, the crop)}."""
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # heavy: grad-cam

        img = photo if isinstance(photo, Image.Image) else load_image(photo)
        pixels = self.preprocess.pixels(img.convert("RGB"))
        x = torch.from_numpy(self.preprocess.normalize_array(pixels[None].numpy()))
        with torch.no_grad():
            probs = torch.softmax(self.model(x), 1)[0].numpy()
        k = int(probs.argmax())
        t = self.classes.index(target) if target is not None else k
        heat = self.cam(input_tensor=x, targets=[ClassifierOutputTarget(t)])[0]
        return {"label": self.classes[k], "prob": float(probs[k]), "target": self.classes[t], "heatmap": heat,
                "view": pixels.permute(1, 2, 0).numpy()}

    def overlay(self, photo, target: str | None = None) -> tuple[Image.Image, dict]:
        from pytorch_grad_cam.utils.image import show_cam_on_image  # heavy: grad-cam

        r = self.explain(photo, target)
        over = show_cam_on_image(r["view"].astype(np.float32) / 255.0, r["heatmap"], use_rgb=True, image_weight=0.55)
        return Image.fromarray(over), r

    def overlay_png(self, photo, target: str | None = None) -> bytes:
        img, _ = self.overlay(photo, target)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return buf.getvalue()


def explain_photos(model, photos: list[str | Path], out: str | Path, overwrite: bool = False) -> list[dict]:
    """One overlay PNG per photo in ``out`` (NAME.gradcam.png); rows of label, prob and file."""
    ex = model if isinstance(model, Explainer) else Explainer.load(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in expand_paths(photos):
        dest = out / f"{Path(p).stem}.gradcam.png"
        if dest.exists() and not overwrite:
            raise WardrobeError(f"{dest} exists: add --overwrite to replace it")
        try:
            img, r = ex.overlay(p)
        except WardrobeError as exc:
            rows.append({"path": str(p), "error": str(exc)})
            continue
        img.save(dest)
        rows.append({"path": str(p), "label": r["label"], "prob": r["prob"], "overlay": str(dest)})
    return rows
