"""Derived copies of an ISNet ONNX graph, made once and cached beside the weights.

- **float32 compute** (CPU): the npm model keeps fp16 weights and casts between fp16 and
  fp32 around its layers; x86 CPUs have no fast fp16 convolution, so the CPU pays for the
  casts and slow kernels. The copy stores the same weights as float32 (exact: every fp16
  value is a float32 value) and drops the casts' fp16 targets.
- **any input size** (``segment.isnet_size``): exported ISNet graphs compute each
  upsampling's target size from tensors traced at 1024², so some sizes are baked in and
  another input size fails. Each ``Resize`` is rewritten to its scale factors (measured by
  one probe run at the native size); input/output height and width become symbolic.

The cache key is the source file's size and mtime; when the weights' folder is read-only
(a shared HF cache), the copy goes to the temp folder.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from animlora.errors import AnimloraError
from animlora.io.files import atomic_write_bytes


def inspect(onnx_path: Path) -> tuple[list[int | str], bool]:
    """The first input's shape (ints, or names of symbolic dims) and whether any weight is fp16."""
    import onnx
    from onnx import TensorProto

    from animlora.errors import BadInputError

    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # protobuf DecodeError, OSError, ...
        raise BadInputError(onnx_path, f"not a readable ONNX model ({exc})") from exc
    if not model.graph.input:
        raise BadInputError(onnx_path, "the ONNX graph has no input")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape: list[int | str] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    return shape, any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer)


def derived_copy(onnx_path: Path, *, to_fp32: bool, flexible: bool) -> Path:
    """Path of the derived graph (made on first use)."""
    if not (to_fp32 or flexible):
        return onnx_path
    stat = onnx_path.stat()
    tags = "-".join(t for t, on in (("fp32", to_fp32), ("flex", flexible)) if on)
    name = f"{onnx_path.stem}-{stat.st_size}-{stat.st_mtime_ns}-{tags}.onnx"
    folders = (onnx_path.parent / ".derived", Path(tempfile.gettempdir()) / "animlora-derived")
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    import onnx

    model = onnx.load(str(onnx_path))
    if to_fp32:
        float32_compute(model)
    if flexible:
        any_size(model)
    data = model.SerializeToString()
    for folder in folders:
        try:
            return atomic_write_bytes(folder / name, data)
        except AnimloraError:
            continue
    raise AnimloraError(f"{onnx_path}: cannot write a derived copy of this model anywhere")


def float32_compute(model: Any) -> None:
    from onnx import TensorProto, numpy_helper

    graph = model.graph

    def widen(tensor: Any) -> None:
        if tensor.data_type == TensorProto.FLOAT16:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name))

    for tensor in graph.initializer:
        widen(tensor)
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT
            elif node.op_type == "Constant" and attr.name == "value":
                widen(attr.t)
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT


def any_size(model: Any) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    graph = model.graph
    resizes = [n for n in graph.node if n.op_type == "Resize"]
    # 1. probe: the real input/output shape of every Resize at the native size
    probe = copy.deepcopy(model)
    for node in resizes:
        probe.graph.output.extend([onnx.ValueInfoProto(name=node.input[0]), onnx.ValueInfoProto(name=node.output[0])])
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    meta = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in meta.shape]
    values = session.run(None, {meta.name: np.zeros(shape, np.float32)})
    shapes = {o.name: v.shape for o, v in zip(session.get_outputs(), values, strict=True)}
    # 2. sizes -> scales
    for node in resizes:
        data = node.input[0]
        src, dst = shapes[data], shapes[node.output[0]]
        scales = np.array([1.0, 1.0, dst[2] / src[2], dst[3] / src[3]], np.float32)
        name = f"{node.name or node.output[0]}_scales"
        graph.initializer.append(numpy_helper.from_array(scales, name))
        del node.input[:]
        node.input.extend([data, "", name])  # X, roi (none), scales
    # 3. symbolic height and width
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            for axis, label in ((2, "height"), (3, "width")):
                dims[axis].ClearField("dim_value")
                dims[axis].dim_param = label
    del graph.value_info[:]
