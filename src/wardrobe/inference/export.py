"""ONNX export of a wardrobe model file, and loading such an export back as a Classifier.

The exported graph takes normalised float32 NCHW pixels ("pixels") and returns both "logits" and
"probabilities" (softmax of logits / temperature), so a shop's own code needs nothing but ONNX
Runtime and the preprocessing recipe, which travels in the file's metadata_props next to the class
names. ``--int8`` adds ONNX Runtime's dynamic quantisation (int8 weights, activations quantised on
the fly), which needs no calibration photos.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from wardrobe.data.cache import file_digest
from wardrobe.errors import WardrobeError
from wardrobe.models.modelfile import _version, load_model, resolve_model_path

FORMATS = ("onnx",)
INPUT_NAME = "pixels"
OUTPUT_NAMES = ("logits", "probabilities")
# metadata_props keys; values are strings (JSON where structured).
META_KEYS = ("wardrobe.classes", "wardrobe.preprocess", "wardrobe.version", "wardrobe.arch",
             "wardrobe.temperature", "wardrobe.metrics", "wardrobe.quantization", "wardrobe.model_format_version")


class _WithProbabilities(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, temperature: float):
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, pixels):
        logits = self.model(pixels)
        return logits, torch.softmax(logits / self.temperature, dim=1)


def default_output(model_path: Path, int8: bool) -> Path:
    folder = model_path.parent
    return folder / ("model.int8.onnx" if int8 else "model.onnx")


def _metadata(meta: dict, quantization: str) -> dict[str, str]:
    return {
        "wardrobe.classes": json.dumps(list(meta["classes"])),
        "wardrobe.preprocess": json.dumps(meta["preprocess"]),
        "wardrobe.version": _version("wardrobe") or "unknown",
        "wardrobe.arch": str(meta["arch"]),
        "wardrobe.temperature": json.dumps(float(meta.get("temperature", 1.0))),
        "wardrobe.metrics": json.dumps(meta.get("metrics") or {}),
        "wardrobe.quantization": quantization,
        "wardrobe.model_format_version": json.dumps(meta.get("format_version")),
    }


def _write_props(path: Path, props: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = "wardrobe clothing-photo classifier; see metadata_props for classes and preprocessing"
    onnx.save(proto, str(path))


def _export_fp32(model: torch.nn.Module, meta: dict, path: Path, opset: int) -> None:
    size = int(meta["preprocess"]["input_size"])
    wrapped = _WithProbabilities(model.eval().to("cpu", memory_format=torch.contiguous_format),
                                 meta.get("temperature", 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, torch.zeros(1, 3, size, size), str(path), input_names=[INPUT_NAME],
                          output_names=list(OUTPUT_NAMES),
                          dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}},
                          opset_version=opset, dynamo=False)


def calibration_photos(data: str, n: int = 128) -> list[Path]:
    """Up to ``n`` photos, evenly spread, from a folder/glob of photos or a dataset (preset name or
    manifest: its training split)."""
    from wardrobe.data import load_dataset
    from wardrobe.inference.predict import expand_paths

    p = Path(data).expanduser()
    if p.is_dir() or any(ch in data for ch in "*?["):
        photos = expand_paths([data])
    else:
        ds = load_dataset(data)
        photos = [r.path for r in (ds.split("train") or ds.records)]
    if not photos:
        raise WardrobeError(f"--calibrate {data}: no photos found")
    step = max(1, len(photos) // n)
    return list(photos[::step][:n])


def _calibration_batches(photos: list, preprocess: dict, batch_size: int = 16):
    """Normalised pixel batches of the calibration photos, for the static quantiser's ranges."""
    from wardrobe.data.loader import iter_pixel_batches
    from wardrobe.transforms import Preprocess

    pre = Preprocess.from_dict(preprocess)
    for _, pixels, _ in iter_pixel_batches(photos, pre, batch_size, workers=0):
        if len(pixels):
            yield {INPUT_NAME: pre.normalize(pixels).numpy()}


def _head_nodes(path: Path) -> list[str]:
    """The classifier after global pooling stays in float: the probe folds its feature
    standardisation into the linear layer, so that layer's weight columns span orders of magnitude
    and per-output-channel int8 would flatten the small ones. It is a few kB of weights."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    pools = [i for i, n in enumerate(nodes) if n.op_type in ("GlobalAveragePool", "ReduceMean")]
    if not pools:
        return []
    return [n.name for n in nodes[pools[-1]:] if n.op_type in ("Gemm", "MatMul", "Conv")]


def _quantize(src: Path, dst: Path, per_channel: bool, calibration=None) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # ORT recommends its pre-processing (shape inference + graph optimisation) before quantising:
    # folding BatchNorm into the convolutions first is what keeps int8 close to fp32.
    pre = dst.with_name(f".{dst.name}.{os.getpid()}.pre.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a warning per shape-computing Slice of "same" padding
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            head = _head_nodes(pre)
            if calibration is None:
                # ORT rewrites Gemm before honouring nodes_to_exclude, so the head is kept in float
                # by quantising convolutions only (the head is the only Gemm/MatMul here).
                quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                                 op_types_to_quantize=["Conv"] if head else None)
                return
            import onnx

            class Reader(CalibrationDataReader):
                def __init__(self, batches):
                    self.batches = iter(batches)

                def get_next(self):
                    return next(self.batches, None)

            # The head's softmax stays in float: its uint8 output would round probabilities to 1/255.
            keep_float = head + [n.name for n in onnx.load(str(pre)).graph.node if n.op_type in ("Softmax", "Div")]
            quantize_static(str(pre), str(dst), Reader(calibration), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float)
    finally:
        root.setLevel(level)
        pre.unlink(missing_ok=True)


def export_model(model: str | Path, output: str | Path | None = None, fmt: str = "onnx", int8: bool = False,
                 calibrate: list | None = None, per_channel: bool = True, opset: int = 17) -> Path:
    """Write MODEL (run folder or model file) as ONNX; returns the path written.

    ``int8`` alone: dynamic quantisation (no data needed). With ``calibrate`` (photo paths, e.g. a
    few hundred training photos): static QDQ quantisation whose activation ranges come from them.

    Written under a temporary name and renamed, so an interrupted export never leaves a file that
    looks complete.
    """
    if fmt not in FORMATS:
        raise WardrobeError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    src = resolve_model_path(model)
    net, meta = load_model(src)
    out = Path(output).expanduser() if output else default_output(src, int8)
    if out.is_dir():
        out = out / default_output(src, int8).name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.onnx")
    fp32 = tmp.with_name(tmp.name + ".fp32.onnx") if int8 else tmp
    try:
        try:
            _export_fp32(net, meta, fp32, opset)
        except Exception as exc:  # noqa: BLE001 - exporter failures are many and deep; report one line
            raise WardrobeError(f"{src}: cannot export {meta['arch']} to ONNX "
                                f"({str(exc).splitlines()[0][:200]})") from None
        if calibrate is not None and not int8:
            raise WardrobeError("calibration photos are for --int8 only")
        if int8:
            if calibrate is not None and not calibrate:
                raise WardrobeError("--calibrate: no photos to calibrate the int8 ranges with")
            batches = _calibration_batches(calibrate, meta["preprocess"]) if calibrate else None
            _quantize(fp32, tmp, per_channel, batches)
        kind = "static" if calibrate else "dynamic"
        quant = f"{kind}-int8{'-per-channel' if per_channel else ''}" if int8 else "none"
        _write_props(tmp, _metadata(meta, quant))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        fp32.unlink(missing_ok=True)
    return out


def read_onnx_meta(path: str | Path) -> dict:
    """The wardrobe description stored in an exported file, in the model file's meta layout."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise WardrobeError(f"{path}: ONNX file not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any protobuf parse failure means "not an ONNX file"
        raise WardrobeError(f"{path}: not an ONNX file (cannot parse it)") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if "wardrobe.classes" not in props or "wardrobe.preprocess" not in props:
        raise WardrobeError(f"{path}: not exported by wardrobe (no class names or preprocessing in its metadata)")
    try:
        return {"classes": json.loads(props["wardrobe.classes"]),
                "preprocess": json.loads(props["wardrobe.preprocess"]),
                "arch": props.get("wardrobe.arch", "unknown"),
                "temperature": float(json.loads(props.get("wardrobe.temperature", "1.0"))),
                "metrics": json.loads(props.get("wardrobe.metrics", "{}")),
                "quantization": props.get("wardrobe.quantization", "none"),
                "exported_by": props.get("wardrobe.version")}
    except (ValueError, TypeError):
        raise WardrobeError(f"{path}: damaged wardrobe metadata in this ONNX file") from None


class OnnxFileRunner:
    """Runs an exported file; returns logits so the Classifier applies the same softmax as always."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        return self.session.run([OUTPUT_NAMES[0]], {INPUT_NAME: x.numpy()})[0]


def load_classifier(path: str | Path, runtime: str = "auto", tta: bool = False):
    """A Classifier from a run folder, a model file or an exported .onnx file."""
    from wardrobe.inference.classifier import Classifier
    from wardrobe.models.runtime import resolve_runtime

    p = Path(path).expanduser()
    if p.suffix.lower() != ".onnx":
        return Classifier.load(p, runtime=runtime, tta=tta)
    if runtime == "torch":
        raise WardrobeError(f"{p}: an exported ONNX file runs in ONNX Runtime only; drop --runtime torch "
                            "or pass the run folder")
    resolve_runtime("onnx")  # one clear line when onnxruntime is missing
    meta = read_onnx_meta(p)
    clf = Classifier(None, meta, runtime="onnx", key={"onnx_file": file_digest(p)}, tta=tta)
    try:
        clf._runner = OnnxFileRunner(p)
    except Exception as exc:  # noqa: BLE001
        raise WardrobeError(f"{p}: ONNX Runtime cannot load this file ({str(exc).splitlines()[0][:200]})") from None
    return clf

