"""A minimal, dependency-free reader for TFLite flatbuffers: constant tensors and the op graph.

The pretrained MoveNet weights ship as a ``.tflite`` file. To load them into PyTorch we
need three things from it and nothing else: the constant tensors (by name, with shape and
dtype), the operators that consume them (to know which convolution a weight belongs to
and how the graph pads, strides and activates it), and the small constants of the
pre/post-processing. This module reads exactly that with ``struct`` over the file bytes,
following the public TFLite schema (``tensorflow/lite/schema/schema.fbs``), so neither
TensorFlow nor the LiteRT runtime is needed at load time (the tests cross-check it
against ``ai_edge_litert``'s own generated schema reader).

Only the first subgraph is read. Tensors stored as float16 are returned as float16
numpy arrays; ``constant()`` converts to float32 on request (fp16 -> fp32 is exact, which
is what the graph's DEQUANTIZE ops do at run time).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# TensorType enum values (schema.fbs) -> numpy dtypes.
_TENSOR_DTYPES: dict[int, np.dtype] = {
    0: np.dtype(np.float32),
    1: np.dtype(np.float16),
    2: np.dtype(np.int32),
    3: np.dtype(np.uint8),
    4: np.dtype(np.int64),
    6: np.dtype(np.bool_),
    7: np.dtype(np.int16),
    9: np.dtype(np.int8),
    10: np.dtype(np.float64),
}

# The BuiltinOperator values this project cares about (schema.fbs); others keep their number.
BUILTIN_OPS: dict[int, str] = {
    0: "ADD", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 6: "DEQUANTIZE",
    14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU", 21: "RELU6", 22: "RESHAPE",
    23: "RESIZE_BILINEAR", 34: "PAD", 40: "MEAN", 41: "SUB", 42: "DIV", 43: "SQUEEZE",
    45: "STRIDED_SLICE", 47: "EXP", 48: "TOPK_V2", 49: "SPLIT", 53: "CAST", 55: "MAXIMUM",
    56: "ARG_MAX", 57: "MINIMUM", 58: "LESS", 61: "GREATER", 62: "GREATER_EQUAL", 64: "SELECT",
    67: "TRANSPOSE_CONV", 69: "TILE", 70: "EXPAND_DIMS", 71: "EQUAL", 74: "SUM", 77: "SHAPE",
    81: "REDUCE_PROD", 82: "REDUCE_MAX", 83: "PACK", 86: "LOGICAL_AND", 88: "UNPACK",
    90: "FLOOR_DIV", 93: "ZEROS_LIKE", 94: "FILL", 96: "RANGE", 97: "RESIZE_NEAREST_NEIGHBOR",
    101: "ABS", 102: "SPLIT_V", 107: "GATHER_ND", 117: "HARD_SWISH", 123: "SELECT_V2",
}  # fmt: skip

PADDING = {0: "SAME", 1: "VALID"}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT", 6: "SIGMOID"}


class TFLiteFormatError(ValueError):
    """The file is not a TFLite flatbuffer this reader understands."""


@dataclass(frozen=True)
class TFLiteTensor:
    """One tensor of the graph.

    Attributes:
        index: position in the subgraph's tensor list (what operators refer to).
        name: the converter's name (often several ';'-joined TF names after fusion).
        shape: static shape (NHWC for activations; OHWI for CONV_2D weights,
            1HWC for DEPTHWISE_CONV_2D weights).
        dtype: numpy dtype of the stored values.
        buffer: index into the model's buffer table (0 = no data).
        data: the constant values, or None for activations.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    buffer: int
    data: np.ndarray | None = field(repr=False, compare=False)

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass(frozen=True)
class TFLiteOperator:
    """One operator: its name, tensor indices (-1 = optional input left out) and options.

    ``options`` holds the decoded builtin options for CONV_2D, DEPTHWISE_CONV_2D,
    RESIZE_BILINEAR and MAX_POOL_2D (padding / strides / fused activation / resize
    semantics), and is empty for every other operator.
    """

    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, object]


class _Table:
    """A flatbuffer table: vtable-driven field access over a bytes buffer."""

    __slots__ = ("buf", "pos", "vtable", "vlen")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        (soffset,) = struct.unpack_from("<i", buf, pos)
        self.vtable = pos - soffset
        (self.vlen,) = struct.unpack_from("<H", buf, self.vtable)

    def _field(self, slot: int) -> int:
        off = 4 + 2 * slot
        if off >= self.vlen:
            return 0
        (rel,) = struct.unpack_from("<H", self.buf, self.vtable + off)
        return self.pos + rel if rel else 0

    def scalar(self, slot: int, fmt: str, default: int | float = 0) -> int | float:
        p = self._field(slot)
        return struct.unpack_from("<" + fmt, self.buf, p)[0] if p else default

    def _indirect(self, slot: int) -> int:
        p = self._field(slot)
        if not p:
            return 0
        (rel,) = struct.unpack_from("<I", self.buf, p)
        return p + rel

    def table(self, slot: int) -> _Table | None:
        p = self._indirect(slot)
        return _Table(self.buf, p) if p else None

    def string(self, slot: int) -> str:
        p = self._indirect(slot)
        if not p:
            return ""
        (n,) = struct.unpack_from("<I", self.buf, p)
        return bytes(self.buf[p + 4 : p + 4 + n]).decode("utf-8", errors="replace")

    def vector(self, slot: int) -> tuple[int, int]:
        """(position of the first element, length); (0, 0) when absent."""
        p = self._indirect(slot)
        if not p:
            return 0, 0
        (n,) = struct.unpack_from("<I", self.buf, p)
        return p + 4, n

    def scalars(self, slot: int, fmt: str) -> tuple:
        start, n = self.vector(slot)
        return struct.unpack_from(f"<{n}{fmt}", self.buf, start) if n else ()

    def tables(self, slot: int) -> list[_Table]:
        start, n = self.vector(slot)
        out = []
        for i in range(n):
            p = start + 4 * i
            (rel,) = struct.unpack_from("<I", self.buf, p)
            out.append(_Table(self.buf, p + rel))
        return out


class TFLiteModel:
    """The constant tensors and operators of a ``.tflite`` file (first subgraph).

    Example::

        model = TFLiteModel.from_file("movenet.tflite")
        w = model.constant("…/block_1_expand/Conv2D")      # float32, OHWI
        for op in model.operators_of("CONV_2D"): ...
    """

    def __init__(self, data: bytes) -> None:
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise TFLiteFormatError("not a TFLite flatbuffer (missing the 'TFL3' identifier)")
        self._data = data
        (root_pos,) = struct.unpack_from("<I", data, 0)
        root = _Table(data, root_pos)
        self.version = int(root.scalar(0, "I"))
        codes = []
        for oc in root.tables(1):
            deprecated = int(oc.scalar(0, "b"))
            builtin = int(oc.scalar(3, "i"))
            codes.append(max(deprecated, builtin))
        buffers = root.tables(4)
        subgraphs = root.tables(2)
        if not subgraphs:
            raise TFLiteFormatError("the model has no subgraph")
        sg = subgraphs[0]
        self.inputs: tuple[int, ...] = tuple(sg.scalars(1, "i"))
        self.outputs: tuple[int, ...] = tuple(sg.scalars(2, "i"))
        tensors: list[TFLiteTensor] = []
        for i, t in enumerate(sg.tables(0)):
            shape = tuple(int(s) for s in t.scalars(0, "i"))
            ttype = int(t.scalar(1, "b"))
            if ttype not in _TENSOR_DTYPES:
                raise TFLiteFormatError(f"tensor {i}: unsupported TensorType {ttype}")
            dtype = _TENSOR_DTYPES[ttype]
            bidx = int(t.scalar(2, "I"))
            values = self._buffer_values(buffers[bidx], dtype, shape) if 0 < bidx < len(buffers) else None
            tensors.append(TFLiteTensor(i, t.string(3), shape, dtype, bidx, values))
        self.tensors: tuple[TFLiteTensor, ...] = tuple(tensors)
        ops = []
        for k, op in enumerate(sg.tables(3)):
            opcode = codes[int(op.scalar(0, "I"))]
            name = BUILTIN_OPS.get(opcode, f"BUILTIN_{opcode}")
            options = self._options(name, op.table(4))
            ops.append(TFLiteOperator(k, name, tuple(op.scalars(1, "i")), tuple(op.scalars(2, "i")), options))
        self.operators: tuple[TFLiteOperator, ...] = tuple(ops)
        self._by_name: dict[str, list[TFLiteTensor]] = {}
        for t in self.tensors:
            self._by_name.setdefault(t.name, []).append(t)
        self._producer = {o: op for op in self.operators for o in op.outputs}
        self._consumers: dict[int, list[TFLiteOperator]] = {}
        for op in self.operators:
            for i in op.inputs:
                if i >= 0:
                    self._consumers.setdefault(i, []).append(op)

    @classmethod
    def from_file(cls, path: str | Path) -> TFLiteModel:
        return cls(Path(path).read_bytes())

    def _buffer_values(self, buf: _Table, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray | None:
        start, n = buf.vector(0)
        if n == 0:
            # Models over 2 GB keep data after the flatbuffer: offset/size fields.
            offset, size = int(buf.scalar(1, "Q")), int(buf.scalar(2, "Q"))
            if offset <= 1 or size == 0:
                return None
            start, n = offset, size
        arr = np.frombuffer(self._data, dtype=dtype, count=n // dtype.itemsize, offset=start)
        count = int(np.prod(shape)) if shape else 1
        if arr.size != count:
            raise TFLiteFormatError(f"buffer holds {arr.size} values, tensor shape {shape} needs {count}")
        return arr.reshape(shape)

    @staticmethod
    def _options(name: str, t: _Table | None) -> dict[str, object]:
        if t is None:
            return {}
        if name == "CONV_2D":
            return {
                "padding": PADDING[int(t.scalar(0, "b"))],
                "stride": (int(t.scalar(2, "i")), int(t.scalar(1, "i"))),  # (h, w)
                "activation": ACTIVATIONS.get(int(t.scalar(3, "b")), "?"),
                "dilation": (int(t.scalar(5, "i", 1)), int(t.scalar(4, "i", 1))),
            }
        if name == "DEPTHWISE_CONV_2D":
            return {
                "padding": PADDING[int(t.scalar(0, "b"))],
                "stride": (int(t.scalar(2, "i")), int(t.scalar(1, "i"))),
                "depth_multiplier": int(t.scalar(3, "i")),
                "activation": ACTIVATIONS.get(int(t.scalar(4, "b")), "?"),
                "dilation": (int(t.scalar(6, "i", 1)), int(t.scalar(5, "i", 1))),
            }
        if name == "RESIZE_BILINEAR":
            return {"align_corners": bool(t.scalar(2, "B")), "half_pixel_centers": bool(t.scalar(3, "B"))}
        if name == "MAX_POOL_2D":
            return {
                "padding": PADDING[int(t.scalar(0, "b"))],
                "stride": (int(t.scalar(2, "i")), int(t.scalar(1, "i"))),
                "filter": (int(t.scalar(4, "i")), int(t.scalar(3, "i"))),
                "activation": ACTIVATIONS.get(int(t.scalar(5, "b")), "?"),
            }
        return {}

    # ---- queries -------------------------------------------------------------------

    def tensor(self, name: str) -> TFLiteTensor:
        """The one tensor with this exact name; KeyError when absent or ambiguous."""
        found = self._by_name.get(name, [])
        if len(found) != 1:
            raise KeyError(f"{len(found)} tensors named {name!r}")
        return found[0]

    def constant(self, ref: str | int, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """Values of a constant tensor (by name or index) as a writable array of ``dtype``.

        A float16 tensor read as float32 is the exact fp16 -> fp32 widening that the
        graph's DEQUANTIZE op performs.
        """
        t = self.tensors[ref] if isinstance(ref, int) else self.tensor(ref)
        if t.data is None:
            raise KeyError(f"tensor {t.index} {t.name!r} holds no constant data")
        return np.array(t.data, dtype=dtype, copy=True)

    def constants(self) -> list[TFLiteTensor]:
        """All tensors that hold data."""
        return [t for t in self.tensors if t.data is not None]

    def operators_of(self, *names: str) -> list[TFLiteOperator]:
        return [op for op in self.operators if op.op in names]

    def producer(self, tensor_index: int) -> TFLiteOperator | None:
        return self._producer.get(tensor_index)

    def consumers(self, tensor_index: int) -> list[TFLiteOperator]:
        return list(self._consumers.get(tensor_index, []))

    def source_constant(self, tensor_index: int) -> int:
        """Follow a DEQUANTIZE back to the constant it widens; other tensors are returned as is."""
        op = self._producer.get(tensor_index)
        if op is not None and op.op == "DEQUANTIZE":
            return op.inputs[0]
        return tensor_index
