"""Make an ISNet ONNX graph run at any input size (a multiple of 32).

Exported ISNet graphs compute each upsampling's target size from tensors traced at
1024x1024, so some sizes are baked in and a smaller input fails. Each ``Resize`` is
rewritten to use its scale factors instead (measured by one probe run at the native
size), and the input/output height and width become symbolic. The result is cached next
to the weights (keyed by the file's size and mtime), so the probe runs once per model.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from animlora.io.files import atomic_write_bytes


def flexible_copy(onnx_path: Path) -> Path:
    """Path of the size-agnostic version of ``onnx_path`` (made on first use), beside the
    weights, or in the temp folder when that is read-only (e.g. a shared HF cache)."""
    import tempfile

    from animlora.errors import AnimloraError

    stat = onnx_path.stat()
    name = f"{onnx_path.stem}-{stat.st_size}-{stat.st_mtime_ns}-flex.onnx"
    for folder in (onnx_path.parent / ".derived", Path(tempfile.gettempdir()) / "animlora-derived"):
        if (folder / name).is_file():
            return folder / name
    data = make_flexible(onnx_path)
    for folder in (onnx_path.parent / ".derived", Path(tempfile.gettempdir()) / "animlora-derived"):
        try:
            return atomic_write_bytes(folder / name, data)
        except AnimloraError:
            continue
    raise AnimloraError(f"{onnx_path}: cannot write the size-agnostic copy of this model anywhere")


def make_flexible(onnx_path: Path) -> bytes:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
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
    return model.SerializeToString()
