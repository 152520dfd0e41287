"""ONNX export of a wardrobe model file (``Classifier.load`` reads such an export back).

The exported graph takes normalised float32 NCHW pixels ("pixels") and returns both "logits" and
"probabilities" (softmax of logits / temperature), so a shop's own code needs nothing but ONNX
Runtime and the preprocessing recipe, which travels in the file's metadata_props next to the class
names. ``--int8`` stores the convolution weights as int8 (see INT8_SCHEMES).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from wardrobe.data import load_dataset
from wardrobe.data.loader import iter_pixel_batches
from wardrobe.errors import WardrobeError
from wardrobe.inference.onnxfile import INPUT_NAME, OUTPUT_NAMES
from wardrobe.inference.predict import expand_paths
from wardrobe.models.modelfile import _version, load_model, resolve_model_path
from wardrobe.models.runtime import export_onnx
from wardrobe.transforms import Preprocess

FORMATS = ("onnx",)
# weights: int8 weights of the output-side half of the convolutions (91 % of the weights), one scale
#   per output channel, turned back into float when the file is loaded; the arithmetic stays fp32.
#   3.1x smaller, top-1 as fp32 on >= 99 % of clothing-top10 validation (tests/test_export.py).
# dynamic: ONNX Runtime's dynamic quantisation (int8 arithmetic, activations quantised on the fly).
#   Its ConvInteger has one weight scale per tensor, which depthwise convolutions with folded batch
#   norm do not survive: 0.91-0.92 agreement with fp32, and slower than fp32 on CPUs without VNNI.
# static: QDQ int8 arithmetic with activation ranges calibrated on photos (--calibrate); the
#   input-side third of the convolutions stays in float (see _quantize).
INT8_SCHEMES = ("weights", "dynamic", "static")
STATIC_FLOAT_SHARE = 1 / 3
# metadata_props keys; values are strings (JSON where structured).
META_KEYS = ("wardrobe.classes", "wardrobe.preprocess", "wardrobe.version", "wardrobe.arch",
             "wardrobe.temperature", "wardrobe.metrics", "wardrobe.quantization", "wardrobe.model_format_version",
             "wardrobe.selection")


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
        "wardrobe.selection": json.dumps(meta.get("selection")),
    }


def _write_props(path: Path, props: dict[str, str]) -> None:
    import onnx  # heavy: onnx, only when exporting or reading an export

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = "wardrobe clothing-photo classifier; see metadata_props for classes and preprocessing"
    onnx.save(proto, str(path))


def _export_fp32(model: torch.nn.Module, meta: dict, path: Path, opset: int) -> None:

    export_onnx(_WithProbabilities(model, meta.get("temperature", 1.0)), Preprocess.from_dict(meta["preprocess"]).hw,
                path, opset, output_names=OUTPUT_NAMES)


def calibration_photos(data: str, n: int = 128) -> list[Path]:
    """Up to ``n`` photos, evenly spread, from a folder/glob of photos or a dataset (preset name or
    manifest: its training split)."""

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

    pre = Preprocess.from_dict(preprocess)
    for _, pixels, _ in iter_pixel_batches(photos, pre, batch_size, workers=0):
        if len(pixels):
            yield {INPUT_NAME: pre.normalize_array(pixels.numpy())}


def _head_nodes(nodes) -> list[str]:
    """The classifier after global pooling stays in float: the probe folds its feature
    standardisation into the linear layer, so that layer's weight columns span orders of magnitude
    and per-output-channel int8 would flatten the small ones. It is a few kB of weights.
    ``nodes``: a graph's nodes, in order."""
    pools = [i for i, n in enumerate(nodes) if n.op_type in ("GlobalAveragePool", "ReduceMean")]
    if not pools:
        return []
    return [n.name for n in nodes[pools[-1]:] if n.op_type in ("Gemm", "MatMul", "Conv")]


def _quantize_weights(src: Path, dst: Path, float_share: float = 0.5) -> None:
    """Conv weights as int8 with a symmetric scale per output channel, each behind a
    DequantizeLinear node, so any ONNX runtime reads the file as it is.

    The first ``float_share`` of the convolutions (input side) keep float weights: they hold few
    weights (9 % of Lite0's) but their rounding errors travel through the whole network. On
    clothing-top10 validation the Lite0 probe's top-1 agreement with fp32 goes from 0.985 (every
    conv int8) to 0.994, for 4.3 MB instead of 3.6 (fp32: 13.5 MB)."""
    import onnx  # heavy: onnx, only when exporting or reading an export
    from onnx import helper, numpy_helper  # heavy: onnx, only when exporting or reading an export

    proto = onnx.load(str(src))
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    convs = [n.input[1] for n in g.node if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits]
    names = sorted(set(convs[int(len(convs) * float_share):]))
    nodes, keep = [], [t for t in g.initializer if t.name not in names]
    for name in names:
        w = numpy_helper.to_array(inits[name]).astype(np.float32)
        amax = np.abs(w).reshape(len(w), -1).max(axis=1)
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.round(w / scale.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127).astype(np.int8)
        keep += [numpy_helper.from_array(q, f"{name}.int8"), numpy_helper.from_array(scale, f"{name}.scale"),
                 numpy_helper.from_array(np.zeros(len(w), np.int8), f"{name}.zero_point")]
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}.int8", f"{name}.scale", f"{name}.zero_point"],
                                      [name], name=f"{name}.dequantize", axis=0))
    del g.initializer[:]
    g.initializer.extend(keep)
    existing = list(g.node)
    del g.node[:]
    g.node.extend(nodes + existing)  # the dequantised weights exist before any node reads them
    onnx.checker.check_model(proto)
    onnx.save(proto, str(dst))


def _quantize(src: Path, dst: Path, per_channel: bool, calibration=None) -> None:
    import onnx  # heavy: onnx, only when exporting or reading an export
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,  # heavy: ONNX Runtime, only when running an export
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import (
        quant_pre_process,  # heavy: ONNX Runtime, only when running an export
    )

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
            nodes = onnx.load(str(pre)).graph.node
            head = _head_nodes(nodes)
            if calibration is None:
                # ORT rewrites Gemm before honouring nodes_to_exclude, so the head is kept in float
                # by quantising convolutions only (the head is the only Gemm/MatMul here).
                quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                                 op_types_to_quantize=["Conv"] if head else None)
                return

            class Reader(CalibrationDataReader):
                def __init__(self, batches):
                    self.batches = iter(batches)

                def get_next(self):
                    return next(self.batches, None)

            # The head's softmax stays in float: its uint8 output would round probabilities to 1/255.
            keep_float = head + [n.name for n in nodes if n.op_type in ("Softmax", "Div")]
            # So does the input-side third of the convolutions: their activation rounding travels
            # through the whole network. Top-1 agreement with fp32 on clothing-top10 validation
            # (bench/int8_agreement.py, AVX2 host): Lite0 probe 0.933 with every conv int8, 0.985 with
            # the first third float; best preset (Lite1) 0.962 -> 0.997. In a trial with other
            # calibration photos a quarter did worse than a third and a half no better; on the AVX-512
            # VNNI host a quarter, 0.4 and a half each agreed on one photo in 341 more than a third
            # (0.991 vs 0.988), too small a margin to move. Still faster than fp32 (bench/serve_bench.py).
            convs = [n.name for n in nodes if n.op_type == "Conv"]
            keep_float += convs[: round(len(convs) * STATIC_FLOAT_SHARE)]
            quantize_static(str(pre), str(dst), Reader(calibration), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float)
    finally:
        root.setLevel(level)
        pre.unlink(missing_ok=True)


def export_model(model: str | Path, output: str | Path | None = None, fmt: str = "onnx", int8: bool = False,
                 calibrate: list | None = None, per_channel: bool = True, opset: int = 17,
                 scheme: str | None = None) -> Path:
    """Write MODEL (run folder or model file) as ONNX; returns the path written.

    ``int8``: int8 convolution weights by ``scheme`` (INT8_SCHEMES; default "weights", or "static"
    when ``calibrate`` photos are given: QDQ quantisation whose activation ranges come from them).

    Written under a temporary name and renamed, so an interrupted export never leaves a file that
    looks complete.
    """
    if fmt not in FORMATS:
        raise WardrobeError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    if scheme is not None and scheme not in INT8_SCHEMES:
        raise WardrobeError(f"--int8-scheme must be one of {', '.join(INT8_SCHEMES)}, not '{scheme}'")
    if calibrate is not None and not int8:
        raise WardrobeError("calibration photos are for --int8 only")
    if scheme is not None and not int8:
        raise WardrobeError("--int8-scheme goes with --int8")
    if calibrate is not None and scheme not in (None, "static"):
        raise WardrobeError(f"--calibrate is for the static scheme, not '{scheme}'")
    if int8:
        scheme = scheme or ("static" if calibrate is not None else "weights")
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
        if scheme == "weights":
            quant = "weights-int8-per-channel"
            _quantize_weights(fp32, tmp)
        elif int8:
            if calibrate is not None and not calibrate:
                raise WardrobeError("--calibrate: no photos to calibrate the int8 ranges with")
            if scheme == "static" and not calibrate:
                raise WardrobeError("--int8-scheme static needs --calibrate PHOTOS for its activation ranges")
            batches = _calibration_batches(calibrate, meta["preprocess"]) if calibrate else None
            _quantize(fp32, tmp, per_channel, batches)
            quant = f"{scheme}-int8{'-per-channel' if per_channel and scheme == 'static' else ''}"
        else:
            quant = "none"
        _write_props(tmp, _metadata(meta, quant))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        fp32.unlink(missing_ok=True)
    return out
