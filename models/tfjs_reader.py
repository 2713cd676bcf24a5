"""Read a TensorFlow.js graph model (``model.json`` + weight shards) without TensorFlow.

Parses the ``graph-model`` format: ``modelTopology.node`` (the frozen GraphDef as JSON:
name, op, inputs, attributes) and ``weightsManifest`` (the constants' names, shapes and
dtypes, stored in order in the shard files, optionally quantised: float16, or uint8 /
uint16 with a per-tensor scale and min). Constants come back as numpy arrays in
TensorFlow's layout (NHWC activations, HWIO conv kernels, HW C M depthwise kernels).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TFJSError", "TFJSNode", "TFJSGraph"]

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANT_DTYPES = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


class TFJSError(ValueError):
    """The model.json or its weight shards are malformed or unsupported."""


@dataclass(frozen=True)
class TFJSNode:
    """One graph node.

    Attributes:
        name: the node's name (``StatefulPartitionedCall/...``).
        op: TensorFlow op type (``_FusedConv2D``, ``Const``, ``ResizeBilinear`` ...).
        inputs: input tensor names (``node`` or ``node:k``; control inputs ``^node`` dropped).
        attrs: the decoded attributes: ints, floats, bools, strings, lists, dtypes.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    def input_nodes(self) -> tuple[str, ...]:
        """Input node names (the ``:k`` output index dropped)."""
        return tuple(i.split(":")[0] for i in self.inputs)


def _decode_attr(value: dict[str, Any]) -> Any:
    if "list" in value:
        lst = value["list"]
        if not lst:
            return []
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        if "b" in lst:
            return [bool(v) for v in lst["b"]]
        return lst
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "type" in value:
        return value["type"]
    return value


class TFJSGraph:
    """A parsed TFJS graph model: nodes, graph inputs/outputs and dequantised constants.

    Build with ``TFJSGraph.from_file(path_to_model_json)``; the shards named in the
    manifest are read from the same folder.
    """

    def __init__(self, model: dict[str, Any], shards: list[bytes]) -> None:
        if model.get("format") != "graph-model":
            raise TFJSError(f"expected a TFJS 'graph-model', got format {model.get('format')!r}")
        topology = model.get("modelTopology") or {}
        self.nodes: dict[str, TFJSNode] = {}
        for raw in topology.get("node", []):
            node = TFJSNode(
                name=raw["name"],
                op=raw["op"],
                inputs=tuple(i for i in raw.get("input", []) if not i.startswith("^")),
                attrs={k: _decode_attr(v) for k, v in raw.get("attr", {}).items()},
            )
            self.nodes[node.name] = node
        self.signature: dict[str, Any] = model.get("signature", {})
        self.generated_by: str = model.get("generatedBy", "")
        self.constants: dict[str, np.ndarray] = _read_weights(model.get("weightsManifest", []), shards)
        missing = [n.name for n in self.nodes.values() if n.op == "Const" and n.name not in self.constants]
        if missing:
            raise TFJSError(f"{len(missing)} Const nodes have no weights in the manifest, e.g. {missing[:3]}")
        self._consumers: dict[str, list[TFJSNode]] = {}
        for node in self.nodes.values():
            for name in node.input_nodes():
                self._consumers.setdefault(name, []).append(node)

    @classmethod
    def from_file(cls, path: str | Path) -> TFJSGraph:
        """Parse ``model.json`` at ``path`` and the weight shards it names (same folder)."""
        path = Path(path)
        try:
            model = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TFJSError(f"cannot read {path}: {exc}") from None
        shards = []
        for group in model.get("weightsManifest", []):
            for shard in group.get("paths", []):
                shard_path = path.parent / shard
                if not shard_path.is_file():
                    raise TFJSError(f"{path} names weight shard {shard}, not found at {shard_path}")
                shards.append(shard_path.read_bytes())
        return cls(model, shards)

    def __iter__(self) -> Iterator[TFJSNode]:
        return iter(self.nodes.values())

    def ops(self, *op_types: str) -> list[TFJSNode]:
        """The nodes of the given op types, in graph order."""
        return [n for n in self.nodes.values() if n.op in op_types]

    def consumers(self, name: str) -> list[TFJSNode]:
        """Nodes that read any output of node ``name``."""
        return list(self._consumers.get(name.split(":")[0], []))

    def producer(self, tensor: str) -> TFJSNode:
        """The node that produces ``tensor`` (``node`` or ``node:k``)."""
        return self.nodes[tensor.split(":")[0]]

    def constant(self, tensor: str) -> np.ndarray:
        """The value of a ``Const`` node (dequantised to its original dtype)."""
        name = tensor.split(":")[0]
        if name not in self.constants:
            raise TFJSError(f"{name!r} is not a constant of the graph")
        return self.constants[name]

    def is_constant(self, tensor: str) -> bool:
        return tensor.split(":")[0] in self.constants


def _read_weights(manifest: list[dict[str, Any]], shards: list[bytes]) -> dict[str, np.ndarray]:
    """Slice every manifest group's concatenated shards into dequantised arrays."""
    out: dict[str, np.ndarray] = {}
    shard_iter = iter(shards)
    for group in manifest:
        buf = b"".join(next(shard_iter) for _ in group.get("paths", []))
        offset = 0
        for spec in group.get("weights", []):
            name, shape, dtype = spec["name"], [int(s) for s in spec["shape"]], spec["dtype"]
            if dtype not in _DTYPES:
                raise TFJSError(f"weight {name!r}: dtype {dtype!r} is not supported")
            count = int(np.prod(shape)) if shape else 1
            quant = spec.get("quantization")
            if quant and quant.get("dtype") not in _QUANT_DTYPES:
                raise TFJSError(f"weight {name!r}: quantisation {quant.get('dtype')!r} is not supported")
            stored = np.dtype(_QUANT_DTYPES[quant["dtype"]] if quant else _DTYPES[dtype])
            nbytes = count * stored.itemsize
            if offset + nbytes > len(buf):
                raise TFJSError(f"weight {name!r} runs past the end of its shards ({len(buf)} bytes)")
            raw = np.frombuffer(buf, stored, count, offset)
            if not quant:
                value = raw.copy()
            elif quant["dtype"] == "float16":
                value = raw.astype(_DTYPES[dtype])
            else:  # affine: q * scale + min (TFJS ``dequantize``)
                value = (raw.astype(np.float32) * float(quant["scale"]) + float(quant["min"])).astype(
                    _DTYPES[dtype]
                )
            offset += nbytes
            out[name] = value.reshape(shape)
        if offset != len(buf):
            raise TFJSError(f"weight shards hold {len(buf)} bytes, the manifest describes {offset}")
    return out
