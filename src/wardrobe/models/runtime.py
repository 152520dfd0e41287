"""Running a network fast on the CPU.

Measured on this project's 2-core machine (bench/runtime.py): EfficientNet-Lite0 at 224 px runs
~120 photos/s in ONNX Runtime against ~43 photos/s in eager PyTorch (channels-last), so ONNX
Runtime is the default wherever it is installed; eager PyTorch is the fallback and the GPU path.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from wardrobe.data.cache import cache_dir, key_digest
from wardrobe.errors import WardrobeError
from wardrobe.ui import warn

RUNTIMES = ("auto", "onnx", "torch")
ONNX_INPUT_NAME = "pixels"  # every export's input: normalised float32 NCHW


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401 - optional: is ONNX Runtime installed?
        return True
    except ImportError:
        return False


def resolve_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise WardrobeError(f"--runtime must be one of {', '.join(RUNTIMES)}, not '{runtime}'")
    if runtime == "auto":
        return "onnx" if onnxruntime_available() and not torch.cuda.is_available() else "torch"
    if runtime == "onnx" and not onnxruntime_available():
        raise WardrobeError("--runtime onnx needs the onnxruntime package (pip install onnxruntime)")
    return runtime


class _StaticSamePadConv(torch.nn.Module):
    """A timm Conv2dSame whose "same" padding was worked out once for a known input size."""

    def __init__(self, conv: torch.nn.Conv2d, pad: tuple[int, int, int, int]):
        super().__init__()
        self.conv, self.pad = conv, pad

    def forward(self, x):
        c = self.conv
        return torch.nn.functional.conv2d(torch.nn.functional.pad(x, self.pad), c.weight, c.bias, c.stride,
                                          0, c.dilation, c.groups)


def input_hw(input_size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of an input given as one side (square) or as (height, width)."""
    return (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)


def static_same_padding(model: torch.nn.Module, input_size: int | tuple[int, int]) -> torch.nn.Module:
    """For export: the TF-ported networks (EfficientNet-Lite) pad "same" from the input's shape at
    run time, which traces into ~150 Shape/Gather/Ceil/Pad nodes per graph. With the spatial size
    fixed those are constants (594 nodes become 106 for Lite0) and the single-photo latency drops by
    about 0.7 ms on 2 cores. Returns ``model`` itself when it has no such layer."""
    try:
        from timm.layers import Conv2dSame  # heavy: timm, only when building a network
        from timm.layers.padding import get_same_padding  # heavy: timm, only when building a network
    except ImportError:
        return model
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: sizes.__setitem__(name, tuple(args[0].shape[-2:])))
             for name, m in model.named_modules() if isinstance(m, Conv2dSame)]
    if not hooks:
        return model

    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *input_hw(input_size)))
    finally:
        for h in hooks:
            h.remove()
    out = copy.deepcopy(model)  # the caller's model keeps its own layers
    for name, (h, w) in sizes.items():
        conv = out.get_submodule(name)
        ph = get_same_padding(h, conv.kernel_size[0], conv.stride[0], conv.dilation[0])
        pw = get_same_padding(w, conv.kernel_size[1], conv.stride[1], conv.dilation[1])
        out.set_submodule(name, _StaticSamePadConv(conv, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)))
    return out


def fold_pads_into_convs(path: Path) -> int:
    """PyTorch convolutions pad symmetrically, so the fixed asymmetric "same" padding exports as a
    Pad node before its Conv. ONNX Runtime's fast CPU layout (NCHWc) stops at every Pad: the tensor
    is reordered out, padded and reordered back (4 round trips in Lite0). ONNX's Conv takes
    asymmetric pads, so each zero Pad feeding only a Conv is moved into that Conv; single-photo
    latency drops by ~2.5 ms here (bench/runtime.py). Rewrites ``path``; returns Pads removed."""
    import onnx  # heavy: onnx, only when exporting or reading an export
    from onnx import helper  # heavy: onnx, only when exporting or reading an export
    from onnx.reference import ReferenceEvaluator  # heavy: onnx, only when exporting or reading an export

    proto = onnx.load(str(path))
    g = proto.graph
    pads = [n for n in g.node if n.op_type == "Pad" and len(n.input) > 1
            and next((a.s for a in n.attribute if a.name == "mode"), b"constant") == b"constant"
            and (len(n.input) < 3 or not n.input[2])]
    if not pads:
        return 0
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    # The pad amounts are constant sub-graphs (the exporter reorders PyTorch's pad list with
    # Concat/Slice/Transpose); evaluate just those nodes.
    needed, stack, constant = [], [n.input[1] for n in pads], True
    seen, initializers = set(), {t.name for t in g.initializer}
    while stack:
        name = stack.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        if name in producer:
            needed.append(producer[name])
            stack.extend(producer[name].input)
        elif name not in initializers:
            constant = False  # depends on a graph input: leave the graph as it is
    if not constant:
        return 0
    ids = {id(n) for n in needed}
    order = [n for n in g.node if id(n) in ids]
    sub = helper.make_graph(order, "pads", [], [helper.make_tensor_value_info(n.input[1], onnx.TensorProto.INT64, None) for n in pads],
                            [t for t in g.initializer if t.name in seen])
    values = ReferenceEvaluator(helper.make_model(sub, opset_imports=proto.opset_import)).run(None, {})
    removed = 0
    for pad, amounts in zip(pads, values):
        a = [int(v) for v in np.asarray(amounts).ravel()]
        users = consumers.get(pad.output[0], [])
        if (len(a) != 8 or a[0] or a[1] or a[4] or a[5] or len(users) != 1 or users[0].op_type != "Conv"
                or any(o.name == pad.output[0] for o in g.output)):
            continue
        conv = users[0]
        attr = next((x for x in conv.attribute if x.name == "pads"), None)
        if next((x.s for x in conv.attribute if x.name == "auto_pad"), b"NOTSET") not in (b"NOTSET", b""):
            continue
        old = list(attr.ints) if attr is not None else [0, 0, 0, 0]
        if attr is not None:
            conv.attribute.remove(attr)
        conv.attribute.append(helper.make_attribute("pads", [old[0] + a[2], old[1] + a[3], old[2] + a[6], old[3] + a[7]]))
        conv.input[0] = pad.input[0]
        g.node.remove(pad)
        removed += 1
    # drop what only fed the removed Pads
    live = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in live for o in n.output):
            keep.append(n)
            live.update(i for i in n.input if i)
    del g.node[:]
    g.node.extend(reversed(keep))
    for t in [t for t in g.initializer if t.name not in live]:
        g.initializer.remove(t)
    onnx.save(proto, str(path))
    return removed


def export_onnx(model: torch.nn.Module, input_size: int | tuple[int, int], path: Path, opset: int = 17, fold_pads: bool = True,
                output_names: tuple[str, ...] = ("output",)) -> Path:
    """Export with input ONNX_INPUT_NAME and a dynamic batch axis: "same" padding fixed for ``input_size``
    and folded into the Convs. Written to a temporary name first so a crash leaves no half file.
    ``fold_pads=False`` keeps the Pad nodes (bench/runtime.py compares both)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    model = static_same_padding(model.eval().to("cpu", memory_format=torch.contiguous_format), input_size)
    dummy = torch.zeros(1, 3, *input_hw(input_size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, dummy, str(tmp), input_names=[ONNX_INPUT_NAME], output_names=list(output_names),
                          dynamic_axes={ONNX_INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in output_names}},
                          opset_version=opset, dynamo=False)
    if fold_pads:
        fold_pads_into_convs(tmp)
    os.replace(tmp, path)
    return path


def onnx_session(path: Path, threads: int | None = None):
    import onnxruntime as ort  # heavy: ONNX Runtime, only when running an export

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxModule:
    """A torch module whose weights will not change again, run in ONNX Runtime: exported once per
    input size, at the first batch of that size, into a temporary folder that goes with this object.
    Returns a list of numpy arrays, one per name in ``output_names``. Not an nn.Module on purpose: it
    holds no weights of its own."""

    def __init__(self, module: torch.nn.Module, output_names: tuple[str, ...] = ("output",),
                 threads: int | None = None):
        self.module, self.output_names = module, output_names
        self.threads = threads or torch.get_num_threads()
        self.sessions: dict[tuple[int, int], object] = {}
        self.tmp = tempfile.TemporaryDirectory(prefix="wardrobe-onnx-")

    def session(self, size: tuple[int, int]):
        if size not in self.sessions:
            path = export_onnx(self.module, size, Path(self.tmp.name) / f"net{size[0]}x{size[1]}.onnx",
                               output_names=self.output_names)
            self.sessions[size] = onnx_session(path, self.threads)
        return self.sessions[size]

    def __call__(self, x: torch.Tensor) -> list[np.ndarray]:
        sess = self.session((int(x.shape[-2]), int(x.shape[-1])))
        return sess.run(None, {ONNX_INPUT_NAME: np.ascontiguousarray(x.detach().float().numpy())})


class TorchRunner:
    def __init__(self, model: torch.nn.Module, device: str | None = None, outputs: int = 1):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # Channels-last is 1.7x faster for depthwise convolutions on CPU here (bench/runtime.py).
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        self.outputs = outputs

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor):
        x = x.to(self.device, memory_format=torch.channels_last)
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            out = self.model(x)
        if self.outputs > 1:
            return tuple(o.float().cpu().numpy() for o in out)
        return out.float().cpu().numpy()


class OnnxRunner:
    def __init__(self, model: torch.nn.Module, input_size: int | tuple[int, int], key: dict, outputs: int = 1):
        # "export" changes whenever the exported graph does, so older cached exports are not reused.
        path = cache_dir() / "onnx" / f"{key_digest({**key, 'export': 3, 'outputs': outputs})}.onnx"
        if not path.is_file():
            export_onnx(model, input_size, path, output_names=tuple(f"output{i}" for i in range(outputs))
                        if outputs > 1 else ("output",))
        self.outputs = outputs
        self.session = onnx_session(path)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor):
        out = self.session.run(None, {self.input: x.numpy()})
        return tuple(out) if self.outputs > 1 else out[0]


def make_runner(model: torch.nn.Module, input_size: int | tuple[int, int], key: dict, runtime: str = "auto", outputs: int = 1):
    """A callable from a float32 NCHW batch to a numpy array of outputs (a tuple of ``outputs``
    arrays when the model returns several). ``key`` must identify the weights exactly: it names the
    cached ONNX export."""
    if resolve_runtime(runtime) == "onnx":
        try:
            return OnnxRunner(model, input_size, key, outputs)
        except Exception as exc:  # noqa: BLE001 - any exporter failure: PyTorch still runs the model
            if runtime == "onnx":
                raise WardrobeError(f"--runtime onnx: this model cannot be exported to ONNX ({str(exc).splitlines()[0][:200]})") from None

            warn(f"ONNX export failed ({str(exc).splitlines()[0][:120]}); running in PyTorch instead")
    return TorchRunner(model, outputs=outputs)
