"""Reading an exported ONNX file back: its wardrobe metadata, and a runner for ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from wardrobe.errors import WardrobeError
from wardrobe.models.runtime import ONNX_INPUT_NAME

INPUT_NAME = ONNX_INPUT_NAME
OUTPUT_NAMES = ("logits", "probabilities")


def dequantized_bytes(path: Path) -> bytes | None:
    """A weights-int8 export with its DequantizeLinear nodes folded back into float initializers, so
    ONNX Runtime runs it exactly like the fp32 export (it would otherwise dequantize on every call).
    None for any other file."""
    import onnx  # heavy: onnx, only when exporting or reading an export
    from onnx import numpy_helper  # heavy: onnx, only when exporting or reading an export

    proto = onnx.load(str(path))
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    dq = [n for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in inits and n.name.endswith(".dequantize")]
    if not dq:
        return None
    used = set()
    for n in dq:
        q = numpy_helper.to_array(inits[n.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[n.input[1]])
        g.initializer.append(numpy_helper.from_array(q * scale.reshape(-1, *([1] * (q.ndim - 1))), n.output[0]))
        used.update(n.input)
    keep_nodes = [n for n in g.node if n not in dq]
    del g.node[:]
    g.node.extend(keep_nodes)
    kept = [t for t in g.initializer if t.name not in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    return proto.SerializeToString()


def read_onnx_meta(path: str | Path) -> dict:
    """The wardrobe description stored in an exported file, in the model file's meta layout."""
    import onnx  # heavy: onnx, only when exporting or reading an export

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
        meta = {"classes": json.loads(props["wardrobe.classes"]),
                "preprocess": json.loads(props["wardrobe.preprocess"]),
                "arch": props.get("wardrobe.arch", "unknown"),
                "temperature": float(json.loads(props.get("wardrobe.temperature", "1.0"))),
                "metrics": json.loads(props.get("wardrobe.metrics", "{}")),
                "quantization": props.get("wardrobe.quantization", "none"),
                "exported_by": props.get("wardrobe.version"),
                "format_version": int(props.get("wardrobe.model_format_version", "1")),
                "selection": json.loads(props.get("wardrobe.selection", "null"))}
    except (ValueError, TypeError):
        raise WardrobeError(f"{path}: damaged wardrobe metadata in this ONNX file") from None
    outputs = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] if proto.graph.output else []
    if not isinstance(meta["classes"], list) or (outputs and outputs[-1] and outputs[-1] != len(meta["classes"])):
        raise WardrobeError(f"{path}: its class list ({len(meta['classes'])} names) does not match the network's "
                            f"{outputs[-1] if outputs else '?'} outputs")
    return meta


class OnnxFileRunner:
    """Runs an exported file; returns logits so the Classifier applies the same softmax as always."""

    def __init__(self, path: str | Path, threads: int | None = None, quantization: str = "none"):
        """``quantization``: the file's wardrobe.quantization (read_onnx_meta); only a weights-int8
        file is parsed here, to fold its weights, so an fp32 file is not parsed twice."""
        import onnxruntime as ort  # heavy: ONNX Runtime, only when running an export

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        folded = dequantized_bytes(Path(path)) if quantization.startswith("weights-") else None
        source = folded or str(path)
        self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        return self.session.run([OUTPUT_NAMES[0]], {INPUT_NAME: x.numpy()})[0]
