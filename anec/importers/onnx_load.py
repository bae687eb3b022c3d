"""Reading an ONNX model, and refusing a bad one with one clear line before any work is done.

Checks what a user can get wrong: a file that is not an ONNX protobuf or is truncated, external
data that cannot be found, an IR version or op set newer than the installed onnx, and op domains
that neither onnx nor the model itself defines. Graph-level problems (a missing initializer, a
cycle) are found while ordering the nodes (`order_nodes`).
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import onnx
from onnx import GraphProto, ModelProto, NodeProto

from anec.errors import AnecError, first_line

ONNX_HINT = "check that the file is an .onnx model written by onnx.save or an exporter"


def read_model(model: str | Path | ModelProto) -> ModelProto:
    """The model as a ModelProto with its external data loaded, validated."""
    if isinstance(model, ModelProto):
        proto, where = model, "model"
        if _needs_external_data(proto):
            raise AnecError("the ModelProto refers to external data that is not loaded", where=where,
                            hint="pass the .onnx path instead, or onnx.load it with load_external_data=True")
    else:
        path = Path(model)
        where = str(path)
        proto = _parse(path)
        if _needs_external_data(proto):
            try:
                onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
            except (OSError, ValueError, onnx.checker.ValidationError) as e:
                raise AnecError("cannot load the model's external data", where=where, why=first_line(e, typed=False),
                                hint="keep the .data file(s) next to the .onnx file, under the names the model records") from None
    validate(proto, where)
    return proto


def _parse(path: Path) -> ModelProto:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AnecError("cannot read the model", where=str(path), why=e.strerror or str(e)) from None
    proto = ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf raises DecodeError (or RuntimeWarning-style errors) for bad bytes
        truncated = data[:1] == b"\x08"  # field 1 (ir_version) as a varint: how every ModelProto starts
        why = (f"the protobuf ends early or is corrupt after {len(data)} bytes" if truncated
               else "the file is not a protobuf-encoded ONNX model")
        raise AnecError("cannot parse the model", where=str(path), why=f"{why} ({type(e).__name__})",
                        hint="re-export or re-download the file" if truncated else ONNX_HINT) from None
    if proto.ir_version == 0 or not proto.HasField("graph"):
        raise AnecError("not an ONNX model", where=str(path), why="it has no IR version or no graph", hint=ONNX_HINT)
    return proto


def _tensors(graph: GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            for g in (*attr.graphs, *([attr.g] if attr.HasField("g") else [])):
                yield from _tensors(g)


def _needs_external_data(model: ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data for t in _tensors(model.graph))


CONTRIB_DOMAINS = frozenset({"com.microsoft"})
"""Domains onnx does not define whose ops anec maps one by one (ONNX Runtime's contrib ops); the
importer refuses their other ops by name."""
CONTRIB_HINT = ("use the model as exported, before ONNX Runtime's graph optimizations (or its transformers optimizer) "
                "fused standard ops into com.microsoft ones")


@functools.cache
def known_domains() -> frozenset[str]:
    """Domains onnx defines op schemas for (the default domain is '' or 'ai.onnx'), and `CONTRIB_DOMAINS`."""
    return frozenset({s.domain for s in onnx.defs.get_all_schemas_with_history()} | {"", "ai.onnx"} | CONTRIB_DOMAINS)


def validate(model: ModelProto, where: str = "model") -> None:
    if model.ir_version > onnx.IR_VERSION:
        raise AnecError(f"IR version {model.ir_version} is newer than the installed onnx {onnx.__version__} reads "
                        f"(IR version {onnx.IR_VERSION})", where=where,
                        hint="upgrade onnx, or export the model with an older IR version")
    newest = onnx.defs.onnx_opset_version()
    local = {f.domain for f in model.functions}
    # ONNX Runtime's saved optimized models import every domain it registers (ai.onnx.training,
    # com.microsoft.nchwc, …) whether or not a node uses it: only a domain in use must be known
    used = {n.domain or "" for n in walk_nodes([*model.graph.node, *(n for f in model.functions for n in f.node)])}
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > newest:
            raise AnecError(f"op set {imp.version} is newer than the installed onnx {onnx.__version__} defines ({newest})",
                            where=where, hint=f"export the model for op set {newest} or older")
        if imp.domain not in known_domains() and imp.domain not in local and imp.domain in used:
            raise AnecError(f"unknown op domain {imp.domain!r}", where=where,
                            why="neither onnx nor the model's own functions define it, so its ops have no meaning anec can know",
                            hint="export with standard ONNX ops, or include the functions that define them")
    imported = {imp.domain for imp in model.opset_import}
    if imported & {"", "ai.onnx"}:
        imported |= {"", "ai.onnx"}
    for node in walk_nodes(model.graph.node):
        domain = node.domain or ""
        if domain not in imported and domain not in local:
            raise AnecError(f"op {node.op_type} uses domain {domain!r}, which the model does not import",
                            where=f"node {node.name or node.output[0]!r}",
                            hint="add the domain to the model's opset_import")


def walk_nodes(nodes: Iterable[NodeProto]) -> Iterator[NodeProto]:
    """Every node, including those inside subgraphs (If/Loop/Scan bodies)."""
    for node in nodes:
        yield node
        for attr in node.attribute:
            for g in (*attr.graphs, *([attr.g] if attr.HasField("g") else [])):
                yield from walk_nodes(g.node)


def outer_names(node: NodeProto) -> set[str]:
    """Values a node's subgraphs read from the enclosing scope (ONNX's implicit inputs)."""
    names: set[str] = set()
    for attr in node.attribute:
        for g in (*attr.graphs, *([attr.g] if attr.HasField("g") else [])):
            defined = {v.name for v in g.input} | {t.name for t in g.initializer}
            for inner in g.node:
                names |= {x for x in inner.input if x and x not in defined} | (outer_names(inner) - defined)
                defined |= set(inner.output)
    return names


def node_label(node: NodeProto) -> str:
    return f"node {node.name or (node.output[0] if node.output else node.op_type)!r} ({node.op_type})"


def order_nodes(nodes: Sequence[NodeProto], available: set[str]) -> list[NodeProto]:
    """Nodes in an order where each runs after its producers; raises on missing inputs and cycles."""
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for out in node.output:
            if out:
                producer[out] = i
    deps: list[set[int]] = []
    for node in nodes:
        needed = {x for x in node.input if x} | outer_names(node)
        for x in sorted(needed):
            if x not in producer and x not in available:
                raise AnecError(f"input {x!r} is not produced by any node, graph input or initializer", where=node_label(node),
                                why="a missing initializer or a broken graph",
                                hint="the model file is incomplete: re-export it, or keep its external-data file beside it")
        deps.append({producer[x] for x in needed if x in producer})
    users: list[list[int]] = [[] for _ in nodes]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    waiting = [len(d) for d in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]  # a heap: among ready nodes, file order wins
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(nodes):
        stuck = next(nodes[i] for i, w in enumerate(waiting) if w)
        raise AnecError("the graph has a cycle", where=node_label(stuck),
                        why="ONNX graphs must be acyclic (loops are expressed with Loop or Scan)",
                        hint="re-export the model; a cycle means the file is corrupt")
    return [nodes[i] for i in order]
