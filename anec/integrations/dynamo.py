"""`torch.compile(model, backend="anec")`: ANE partitions through anec, everything else eager.

Registered as the `anec` entry of the `torch_dynamo_backends` entry-point group, so it works right
after installation without `import anec`. For each graph Dynamo captures:

1. aot_autograd lowers it to ATen with torch's core decompositions minus the ops the ANE runs
   whole (`anec.importers.torch.KEEP_WHOLE`);
2. parameters and buffers are frozen into constants (as inductor's freezing does: later in-place
   changes to the module's weights are not seen);
3. the graph is imported once; each node is ANE-capable when every op it became passes
   `anec.legality.legality` for the target — the same predicate the compiler partitions with —
   and nodes whose value is a constant are folded;
4. torch.fx's `CapabilityBasedPartitioner` groups ANE-capable nodes; each group of at least
   `min_partition_size` ops is compiled once by `anec.compile` and runs through the anec runtime
   (fp16 on the ANE segments); the rest of the graph runs eagerly in torch.

Options (`torch.compile(m, backend="anec", options={...})`): `target` (default "m1"), `strict`
(raise instead of falling back), `min_partition_size` (default 1), `input_ranges` (the values
integer arguments take, `{"position_ids": (0, 511)}`: cos/sin of them become exact table lookups
on the ANE), and the precision policy of `anec.compile`:
- `keep_fp32`: nodes that run eagerly in torch, in float32, named as `anec compile --keep-fp32`
  names ops (the FX node name, `ane.<op>`, or the ATen op, `aten.sum.dim_IntList`); an entry that
  names no node of a graph is ignored there, since graph breaks split a model's nodes over graphs
  (`REPORTS` lists the nodes kept, with that reason);
- `precision="auto"` and `tolerance`: each ANE partition keeps in float32 the fewest ops that bring
  its outputs within the tolerance, measured on the partition's inputs at its first call.
Graphs whose sizes change are compiled once per shape under one Dynamo graph (`buckets`,
`max_shapes`: see `shape_buckets`). A graph's placement and its partitions' programs are kept in the
compile cache on disk (`compile_cache`): a later process reads them back without importing the
graph or running a pass (`GraphReport.from_cache`).
Any failure to compile a graph runs that graph eagerly with one `AnecFallbackWarning` that says
why. `REPORTS` holds one `GraphReport` per compiled graph: partitions, FLOPs on the ANE, and the
host ops with reasons; a graph that runs eagerly counts all its FLOPs on the CPU.

Work Dynamo itself keeps from the backend — a recompile for every new input shape, the recompile
limit, a frame skipped because it holds an `nn.LSTM`/`GRU`/`RNN` — is not seen by a backend call,
so this module also watches Dynamo (a compile-end callback and a filter on its recompile-limit log
record) and says so with one `AnecFallbackWarning` per cause, with the fix (`FIXES`).

Recurrent layers: Dynamo traces them only with `torch._dynamo.config.allow_rnn`, read while it
traces the frame, before any backend runs; `torch.compile` hides a backend's `backend_ctx_ctor`
(the only per-compile hook), so the backend cannot set it and says so instead. Once traced, the
backend lowers the layer with oneDNN off, so torch decomposes it into per-step matmuls and gates
(the ANE runs them) rather than into the opaque `mkldnn_rnn_layer`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import logging
import operator
import re
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupportBase
from torch.fx.passes.utils.fuser_utils import fuse_by_partitions
from torch.utils._python_dispatch import is_traceable_wrapper_subclass
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Operation

from anec.agreement import REL_L2_MAX
from anec.analysis import flops
from anec.descriptors.binary import decode, encode
from anec.descriptors.program import AnecFile
from anec.dialects import ane
from anec.dialects.discardable import NAME_ATTR, name_of, source_name
from anec.dialects.host import HostOp
from anec.errors import AnecError, AnecFallbackWarning, ImportFailure, first_line
from anec.host_kernels.aten import to_numpy
from anec.importers.aten import op_key
from anec.importers.aten_quantized import Tracker
from anec.importers.torch import DEQUANTIZED, WEIGHT_NAMES, GraphImporter, ane_decompositions
from anec.integrations import compile_cache
from anec.integrations.shape_buckets import (
    MAX_SHAPES,
    DynamicGraph,
    ShapeDispatch,
    bucket_symbols,
    dimension_name,
    parse_buckets,
)
from anec.legality import legality
from anec.lowering.partition import kept_in_fp32
from anec.pipeline import GRAPH_PASSES, PRECISIONS, CompileOptions, run_pipeline
from anec.pipeline import compile as compile_model
from anec.runtime import run_file
from anec.targets import Target, get_target

KEPT_IN_TORCH = "kept in float32 by keep_fp32 (runs eagerly in torch)"

RUNTIME_EMIT = "descriptors"
"""The pipeline an ANE partition is compiled with: the one whose output the runtime executes."""


__all__ = ["REPORTS", "AnecFallbackWarning", "BackendOptions", "GraphReport", "anec_backend"]

FIXES: dict[str, str] = {
    "recompile": "Dynamo recompiles this code for each new input shape and anec compiles each graph again; "
                 "after torch._dynamo.config.recompile_limit graphs torch runs it eagerly. Keep shapes fixed "
                 "(for transformers' generate, cache_implementation='static'), or let the sizes vary "
                 "(dynamic=None or True): anec then compiles each size once under one graph, or pads to "
                 "options={'buckets': {...}}",
    "recompile-limit": "torch._dynamo.config.recompile_limit was reached: Dynamo runs the rest of this code eagerly, "
                       "not on the ANE. Keep input shapes fixed (pad to a few sizes; for transformers' generate, "
                       "cache_implementation='static') or raise the limit",
    "rnn": "Dynamo skipped code holding an nn.LSTM/GRU/RNN: it runs eagerly in torch, not on the ANE. "
           "Set torch._dynamo.config.allow_rnn = True before the first call (or call inside "
           "`with torch._dynamo.config.patch(allow_rnn=True):`); anec then lowers the layer to the ANE",
}
"""Why work runs eagerly instead of through anec, and what to do about it: one warning per cause."""

WARNED: set[str] = set()
"""The `FIXES` causes already warned about in this process."""


def warn_once(cause: str, message: str | None = None) -> None:
    """One `AnecFallbackWarning` per cause and process (`message` defaults to the cause's fix)."""
    if cause not in WARNED:
        WARNED.add(cause)
        warnings.warn(f"anec: {message or FIXES[cause]}", AnecFallbackWarning, stacklevel=3)


@dataclass(frozen=True)
class BackendOptions:
    target: str = "m1"
    strict: bool = False
    min_partition_size: int = 1
    keep_fp32: Sequence[str] = ()
    precision: str = "fp16"
    tolerance: float = REL_L2_MAX
    buckets: Mapping[str, Sequence[int]] | None = None
    """Sizes dynamic dimensions are compiled for, by name (`x.1`, `*`): see `shape_buckets`."""
    input_ranges: Mapping[str, tuple[float, float]] | None = None
    """The values integer inputs take, named as the compiled function names its arguments
    (`position_ids`): cos/sin of a bounded integer become table lookups (`tabulate_bounded`)."""
    max_shapes: int = MAX_SHAPES
    """How many shapes a dynamic graph is compiled for where no bucket covers a dimension; further
    shapes run eagerly, with one warning."""

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None) -> BackendOptions:
        options = dict(options or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise AnecError(f"unknown anec backend option {unknown[0]!r}", hint=f"options are {', '.join(sorted(known))}")
        if isinstance(options.get("keep_fp32"), str):
            options["keep_fp32"] = [options["keep_fp32"]]
        opts = cls(**options)
        get_target(opts.target)
        if opts.precision not in PRECISIONS:
            raise AnecError(f"unknown precision {opts.precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
        if not (isinstance(opts.tolerance, int | float) and opts.tolerance > 0):
            raise AnecError(f"tolerance must be a positive relative L2 error, got {opts.tolerance!r}")
        for name in ("min_partition_size", "max_shapes"):
            value = getattr(opts, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise AnecError(f"{name} must be a positive integer, got {value!r}")
        return opts if opts.buckets is None else dataclasses.replace(opts, buckets=parse_buckets(opts.buckets))


@dataclass
class GraphReport:
    """What happened to one captured graph."""

    target: str
    partitions: int = 0
    ane_flops: int = 0
    total_flops: int = 0
    host_ops: list[tuple[str, str, str]] = field(default_factory=list)
    """(node, op, why it is not on the ANE) for every node that runs in torch."""
    fallback: str | None = None
    """Why the whole graph runs eagerly, if it does."""
    sizes: dict[str, int] = field(default_factory=dict)
    """The bucket a dynamic graph was compiled for here (dimension name -> size); empty for a static graph."""
    from_cache: bool = False
    """Placed and compiled from the compile cache: nothing was imported, no pass ran."""

    @property
    def ane_flops_fraction(self) -> float:
        return 0.0 if self.total_flops == 0 else self.ane_flops / self.total_flops

    def fall_back(self, why: str) -> None:
        """The graph runs eagerly from now on: nothing of it runs on the ANE."""
        self.fallback = why
        self.partitions = 0
        self.ane_flops = 0


REPORTS: list[GraphReport] = []
"""One report per graph compiled in this process, in compile order."""


def anec_backend(gm: fx.GraphModule, example_inputs: Sequence[Any], options: Mapping[str, Any] | None = None) -> Callable:
    """The Dynamo backend: returns a callable computing `gm`, with ANE partitions run by anec."""
    watch_dynamo()
    opts = BackendOptions.parse(options)
    if any(isinstance(x, torch.SymInt | int) or (isinstance(x, torch.Tensor) and not _static(x)) for x in example_inputs):
        return _dynamic(gm, example_inputs, opts)
    compile_id = torch._guards.CompileContext.current_compile_id()
    if compile_id is not None and (compile_id.frame_compile_id or 0) >= 2:  # a third graph: prefill and decode are two
        warn_once("recompile")
    forward = compile_static(gm, example_inputs, opts, GraphReport(target=opts.target))
    if compile_id is not None and compile_id.frame_id is not None and (sources := input_sources(gm)) is not None:
        inputs = [weakref.ref(x) if isinstance(x, torch.Tensor) else None for x in example_inputs]
        STATIC_GRAPHS.setdefault(compile_id.frame_id, []).append(StaticGraph(dimension_sizes(gm), sources, inputs, forward))
    return forward


@dataclass(frozen=True)
class StaticGraph:
    """A static graph the backend compiled: its inputs' sizes by dimension name (`x.1`), its inputs'
    Dynamo sources (`L['x']`), the tensors it was compiled with (weakly: not kept alive), and its forward."""

    sizes: dict[str, int]
    sources: list[str]
    inputs: list[weakref.ref[torch.Tensor] | None]
    forward: Callable

    def reusable_by(self, graph: DynamicGraph, sources: Sequence[str], inputs: Sequence[Any]) -> list[int] | None:
        """Where the dynamic graph's inputs are that this graph takes, if it can run the dynamic graph's
        calls of its sizes: every input whose sizes do not vary there must be the very tensor this
        graph was compiled with (its weights are frozen in it; another instance of the module has others)."""
        if not set(self.sources) <= set(sources):
            return None
        index = [sources.index(s) for s in self.sources]
        for mine, i in zip(self.inputs, index):
            if mine is None:
                continue
            shape = graph.tensor_inputs.get(i)
            if shape is None or (all(isinstance(d, int) for d in shape) and inputs[i] is not mine()):
                return None
        return index


STATIC_GRAPHS: dict[int, list[StaticGraph]] = {}
"""The static graphs of each frame (by Dynamo's frame id). Under `dynamic=None` Dynamo compiles a
frame's first shape static and then one dynamic graph, which it tries first from then on: the dynamic
graph runs the static graphs' shapes through them rather than compile them again."""


def input_sources(gm: fx.GraphModule) -> list[str] | None:
    """The Dynamo source of each input of `gm` (None if one has none)."""
    names = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            source = getattr(node.meta.get("grapharg"), "source", None)
            if source is None:
                return None
            names.append(source.name)
    return names


def dimension_sizes(gm: fx.GraphModule) -> dict[str, int]:
    """The static sizes of `gm`'s input tensors by dimension name (`x.1`)."""
    sizes = {}
    for node in gm.graph.nodes:
        value, source = node.meta.get("example_value"), getattr(node.meta.get("grapharg"), "source", None)
        if node.op == "placeholder" and isinstance(value, torch.Tensor) and source is not None:
            for axis, size in enumerate(value.shape):
                if (name := dimension_name(f"{source.name}.size()[{axis}]")) is not None:
                    sizes[name] = int(size)
    return sizes


def _dynamic(gm: fx.GraphModule, example_inputs: Sequence[Any], opts: BackendOptions) -> Callable:
    """A graph with symbolic sizes: one static compile per shape, each dimension padded to its
    bucket where `buckets` gives one, else compiled at each size it takes (up to `max_shapes`)."""
    graph = DynamicGraph.of(gm)

    def specialize(padded: list[Any], sizes: dict[str, int]) -> Callable:
        from torch._subclasses.fake_tensor import FakeTensorMode

        with torch._guards.tracing(torch._guards.TracingContext(FakeTensorMode())):  # what Dynamo gives a backend
            return compile_static(gm, padded, opts, GraphReport(target=opts.target, sizes=sizes))

    def refuse(message: str) -> None:
        if opts.strict:
            raise AnecError(message)
        warn_once(message, message)

    dispatch = ShapeDispatch(gm.forward, graph, bucket_symbols(graph, opts.buckets or {}), specialize, refuse, opts.max_shapes)
    compile_id, sources = torch._guards.CompileContext.current_compile_id(), input_sources(gm)
    if compile_id is None or compile_id.frame_id is None or sources is None:
        return dispatch
    for static in STATIC_GRAPHS.get(compile_id.frame_id, []):
        if (index := static.reusable_by(graph, sources, example_inputs)) is not None:
            dispatch.reuse(static.sizes, lambda *args, forward=static.forward, index=index: forward(*(args[i] for i in index)))
    return dispatch


def compile_static(gm: fx.GraphModule, example_inputs: Sequence[Any], opts: BackendOptions, report: GraphReport) -> Callable:
    """`gm` lowered to ATen by aot_autograd, partitioned, its ANE partitions compiled by anec."""
    from torch._decomp import core_aten_decompositions
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func

    REPORTS.append(report)

    def compile_forward(aot_gm: fx.GraphModule, fake_inputs: Sequence[Any]) -> Callable:
        from torch._subclasses.fake_tensor import unset_fake_temporarily

        try:
            with unset_fake_temporarily():  # weights are real tensors; folding computes with them
                return partitioned_forward(aot_gm, example_inputs, input_names(gm), opts, report, argument_names(gm))
        except AnecError:
            raise
        except Exception as e:  # an anec bug (the importer names its own failures): one line, not torch's traceback
            raise ImportFailure.of("anec failed to place or compile the ATen graph", "the torch.compile backend", e) from e

    def eager_backward(bw_gm: fx.GraphModule, fake_inputs: Sequence[Any]) -> Callable:
        return make_boxed_func(bw_gm.forward)  # the ANE runs inference; gradients are torch's

    try:
        with _without_onednn():
            return aot_autograd(fw_compiler=compile_forward, bw_compiler=eager_backward,
                                decompositions=ane_decompositions(core_aten_decompositions()))(gm, example_inputs)
    except AnecError as e:
        return _eager(gm, opts, report, e)
    except Exception as e:
        return _eager(gm, opts, report, AnecError("torch's AOT tracing and decompositions failed on the graph", where="aot_autograd",
                                                  why=first_line(e), hint="torch.compile(model) with the default backend shows "
                                                  "whether torch itself can trace it; else file it with anec"))


@contextlib.contextmanager
def _without_onednn() -> Iterator[None]:
    """Trace with oneDNN off: torch then decomposes LSTMs into per-step matmuls and gates (ANE ops)
    rather than into `aten.mkldnn_rnn_layer`, which only the CPU runs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN", category=UserWarning)
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def watch_dynamo() -> None:
    """Warn when Dynamo keeps work from the backend (see `FIXES`). Idempotent; called on import and
    by every backend call, since `torch._dynamo.reset()` drops Dynamo's callbacks. Their absence is
    how a reset shows: the static graphs of the frames before it go too (frame ids start again)."""
    from torch._dynamo.callback import callback_handler

    if _check_skipped_rnn not in callback_handler.end_callbacks:
        STATIC_GRAPHS.clear()
        callback_handler.register_end_callback(_check_skipped_rnn)
    limit_log = logging.getLogger("torch._dynamo.convert_frame")
    if _RECOMPILE_LIMIT not in limit_log.filters:
        limit_log.addFilter(_RECOMPILE_LIMIT)


_rnn_skips_seen = [0]
"""How many RNN skips Dynamo had counted at the last compile end (its counters outlive `reset()`)."""


def _check_skipped_rnn(args: Any) -> None:
    from torch._dynamo.utils import counters

    skips = sum(n for reason, n in counters["unimplemented"].items() if "Attempted to wrap RNN, GRU, or LSTM" in reason)
    if skips > _rnn_skips_seen[0]:
        warn_once("rnn")
    _rnn_skips_seen[0] = skips


class _RecompileLimitFilter(logging.Filter):
    """Turns Dynamo's recompile-limit log record into an `AnecFallbackWarning` once anec has compiled
    a graph in this process (the record does not say which backend hit the limit)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if REPORTS and str(record.msg).startswith("torch._dynamo hit config.") and "recompile_limit" in str(record.args):
            warn_once("recompile-limit")
        return True


_RECOMPILE_LIMIT = _RecompileLimitFilter()


def _static(t: torch.Tensor) -> bool:
    return all(isinstance(d, int) for d in t.shape)


def _eager(gm: fx.GraphModule, opts: BackendOptions, report: GraphReport, error: Exception) -> Callable:
    """Run `gm` eagerly, saying why once (or raise `error` when strict)."""
    if opts.strict:
        raise error
    report.fall_back(_why(error))
    warnings.warn(f"anec: this graph runs eagerly in torch: {report.fallback}", AnecFallbackWarning, stacklevel=3)
    return gm.forward


def _why(e: Exception) -> str:
    return e.one_line() if isinstance(e, AnecError) else first_line(e)


def partitioned_forward(aot_gm: fx.GraphModule, example_inputs: Sequence[Any], names: Sequence[str], opts: BackendOptions,
                        report: GraphReport, arguments: Sequence[str] = ()) -> Callable:
    """A boxed callable for an ATen graph: frozen, folded, partitioned, ANE parts compiled by anec.
    `arguments` names the graph's inputs for `opts.input_ranges`.

    The placement and the partitions' programs come from the compile cache when it holds them
    (`PartitionPlan`): a hit imports nothing and runs no pass.
    """
    from torch._functorch.aot_autograd import make_boxed_func

    eager = copy.deepcopy(aot_gm)
    placeholders = [n for n in aot_gm.graph.nodes if n.op == "placeholder"]
    freeze(aot_gm, placeholders, example_inputs, names)
    declared = opts.input_ranges or {}
    user_inputs = placeholders[len(placeholders) - len(arguments):] if arguments else []
    importer = GraphImporter({}, input_ranges={n.name: declared[a] for n, a in zip(user_inputs, arguments) if a in declared})
    importer.rewrite_graph(aot_gm.graph, [(n.name, n) for n in placeholders if n.users], aot_gm)  # a cache hit partitions the same graph
    aot_gm.recompile()
    key = compile_cache.graph_key("plan", aot_gm, opts.target, extra=plan_options(opts))
    fold_constants(aot_gm)
    cached = PartitionPlan.load(key)
    plan = cached or place(aot_gm, placeholders, opts, importer)
    report.total_flops, report.ane_flops, report.host_ops = plan.total_flops, plan.ane_flops, list(plan.host_ops)
    nodes = {n.name: n for n in aot_gm.graph.nodes}
    fused = fuse_by_partitions(aot_gm, [dict.fromkeys(nodes[n] for n in p) for p in plan.partitions], prefix=PARTITION_PREFIX)
    calls = {n.target: n for n in fused.graph.nodes if n.op == "call_module"}
    partitions = []
    for i in range(len(plan.partitions)):
        name = f"{PARTITION_PREFIX}{i}"
        sub = getattr(fused, name)
        inline_constant_inputs(fused, calls[name], sub)
        partitions.append(AnePartition(sub, opts.target, opts.precision, opts.tolerance, key=plan.programs[i] if cached else None))
        setattr(fused, name, partitions[-1])
    report.partitions = len(partitions)
    report.from_cache = cached is not None and all(p.from_cache for p in partitions)
    if cached is None:
        compile_cache.store(key, dataclasses.replace(plan, programs=tuple(p.key for p in partitions)).encode())
    fused.graph.eliminate_dead_code()
    fused.recompile()
    return make_boxed_func(_guarded(fused.forward, eager.forward, opts, report))


PARTITION_PREFIX = "ane_partition_"


def plan_options(opts: BackendOptions) -> list[str]:
    """The options a graph's placement and programs depend on (beside the graph and target)."""
    return [f"keep_fp32={sorted(opts.keep_fp32)}", f"min_partition_size={opts.min_partition_size}",
            f"precision={opts.precision}", f"tolerance={opts.tolerance}"]


@dataclass(frozen=True)
class PartitionPlan:
    """Where a frozen, folded graph's nodes run, and its partitions' programs: all a compile-cache
    hit needs to rebuild the partitioned graph without importing it or running a pass."""

    partitions: tuple[tuple[str, ...], ...]
    """Each ANE partition's nodes by name, in the partitioner's order (it fixes the programs' inputs)."""
    programs: tuple[str | None, ...]
    """Each partition's program, by compile-cache key (None: compiled at its first call, precision auto)."""
    total_flops: int
    ane_flops: int
    host_ops: tuple[tuple[str, str, str], ...]
    """`GraphReport.host_ops`."""

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def load(cls, key: str) -> PartitionPlan | None:
        """The plan stored under `key`, or None (an entry that does not parse is a miss)."""
        data = compile_cache.load(key)
        try:
            fields = json.loads(data) if data is not None else None
            return None if fields is None else cls(tuple(map(tuple, fields["partitions"])), tuple(fields["programs"]),
                                                   fields["total_flops"], fields["ane_flops"], tuple(map(tuple, fields["host_ops"])))
        except (ValueError, KeyError, TypeError):
            return None


def place(gm: fx.GraphModule, placeholders: Sequence[fx.Node], opts: BackendOptions, importer: GraphImporter) -> PartitionPlan:
    """Import the frozen, folded graph, find each node's verdict and group the ANE-capable nodes."""
    runtime_inputs = [(n.name, n) for n in placeholders if n.users]
    output = next(n for n in gm.graph.nodes if n.op == "output")
    outputs = [(f"out{i}", v) for i, v in enumerate(fx.node.map_arg(output.args[0], lambda n: n)) if isinstance(v, fx.Node)]
    module = importer.run(gm.graph, runtime_inputs, outputs, owner=gm)
    verdicts = node_verdicts(module, gm.graph, get_target(opts.target))
    if opts.keep_fp32:
        aten_types = {n.name: str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
        blocks = [fn.body.block for fn in module.ops if isinstance(fn, func.FuncOp)]
        kept = kept_in_fp32(blocks, opts.keep_fp32, aten_types, KEPT_IN_TORCH, strict=False)  # with graph breaks, a named node is in one graph only
        verdicts = {**verdicts, **{node: dataclasses.replace(verdicts.get(node, NO_OPS), reason=KEPT_IN_TORCH)
                                   for node in {source_name(name_of(op)) for op in kept}}}
    support = AneSupport(verdicts, get_target(opts.target))
    partitioner = CapabilityBasedPartitioner(gm, support, allows_single_node_partition=True)
    partitions = [p for p in partitioner.propose_partitions() if support.op_count(p.nodes) >= opts.min_partition_size]
    in_partitions = {n for p in partitions for n in p.nodes}
    small = f"its ANE partition has fewer than the {opts.min_partition_size} ops of min_partition_size"
    return PartitionPlan(
        partitions=tuple(tuple(n.name for n in p.nodes) for p in partitions),
        programs=(),
        total_flops=sum(v.flops for v in verdicts.values()),
        ane_flops=sum(verdicts.get(n.name, NO_OPS).flops for n in in_partitions),
        host_ops=tuple((n.name, str(n.target), support.reason(n) or small) for n in gm.graph.nodes
                       if verdicts.get(n.name, NO_OPS).ops and n not in in_partitions))


def input_names(gm: fx.GraphModule) -> list[str]:
    """Dynamo's graph inputs as module paths (`layers.0.weight`) where they come from a module."""
    names = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            source = getattr(node.meta.get("grapharg"), "source", None)
            keys = re.findall(r"\['([^']+)'\]", source.name) if source is not None else []
            names.append(".".join(keys[1:]) if len(keys) > 1 and keys[0] == "self" else node.name)
    return names


def argument_names(gm: fx.GraphModule) -> list[str]:
    """Dynamo's graph inputs as the compiled function names them (`position_ids` for the source
    `L['kwargs']['position_ids']`), else the node's name."""
    names = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            source = getattr(node.meta.get("grapharg"), "source", None)
            keys = re.findall(r"\['([^']+)'\]", source.name) if source is not None else []
            names.append(keys[-1] if keys else node.name)
    return names


def freeze(gm: fx.GraphModule, placeholders: Sequence[fx.Node], example_inputs: Sequence[Any], names: Sequence[str]) -> None:
    """Turn the parameter and buffer inputs of `gm` into attributes (constants for the importer)."""
    context = torch._guards.TracingContext.try_get()
    if context is None or context.fw_metadata is None:
        return
    metadata = context.fw_metadata
    params = list(context.params_flat or [])
    values = [*params, *example_inputs]
    labelled = [plain for value, label in zip(values, [f"param{i}" for i in range(len(params))] + list(names))
                for plain in plain_tensors(value, label)]
    if len(labelled) != len(placeholders):
        raise AnecError(f"cannot match {len(placeholders)} graph inputs with {len(labelled)} values to freeze them")
    labels, real = [label for label, _ in labelled], [value for _, value in labelled]
    mutated = {i for i, info in enumerate(metadata.input_info) if info.mutates_data or info.mutates_metadata}
    first = next(iter(gm.graph.nodes))
    for i in metadata.static_input_indices:
        if i in mutated or not isinstance(real[i], torch.Tensor):
            continue
        placeholders[i].replace_all_uses_with(constant_node(gm, f"_anec_frozen_{i}", real[i].detach(), first, labels[i]))


def plain_tensors(value: Any, label: str) -> list[tuple[str, Any]]:
    """The plain tensors (labelled `label.attr`) a tensor subclass (torchao's quantized weights) holds,
    in the order AOT Autograd passes them to the graph (`__tensor_flatten__`, recursively); any other value is itself."""
    if not is_traceable_wrapper_subclass(value):
        return [(label, value)]
    attrs, _ = value.__tensor_flatten__()
    return [plain for attr in attrs for plain in plain_tensors(getattr(value, attr), f"{label}.{attr}")]


def constant_node(gm: fx.GraphModule, name: str, value: torch.Tensor, before: fx.Node, label: str) -> fx.Node:
    """A `get_attr` node (inserted before `before`) for a constant kept as a buffer of `gm`; `label`
    is the name its weight gets in anec's store (`gm.meta[WEIGHT_NAMES]`)."""
    gm.register_buffer(name, value, persistent=False)
    gm.meta.setdefault(WEIGHT_NAMES, {})[name] = label
    with gm.graph.inserting_before(before):
        node = gm.graph.get_attr(name)
    node.meta["val"] = value
    return node


def inline_constant_inputs(parent: fx.GraphModule, call: fx.Node, sub: fx.GraphModule) -> None:
    """Move the constants a fused partition receives as inputs into the partition itself."""
    placeholders = [n for n in sub.graph.nodes if n.op == "placeholder"]
    if DEQUANTIZED in parent.meta:  # which of the constants are dequantized integers
        sub.meta[DEQUANTIZED] = parent.meta[DEQUANTIZED]
    kept = []
    for placeholder, arg in zip(placeholders, call.args):
        if isinstance(arg, fx.Node) and arg.op == "get_attr":
            assert isinstance(arg.target, str), "a get_attr node's target is the attribute's name"
            label = parent.meta.get(WEIGHT_NAMES, {}).get(arg.target, arg.target)
            placeholder.replace_all_uses_with(constant_node(sub, placeholder.name, getattr(parent, arg.target), placeholder, label))
            sub.graph.erase_node(placeholder)
        else:
            kept.append(arg)
    call.args = tuple(kept)
    sub.recompile()


def fold_constants(gm: fx.GraphModule) -> None:
    """Replace the nodes computed from constants alone by attributes holding their values, evaluated
    in torch (as the importer would fold them), so partitions receive them as weights. The importer's
    `Tracker` records which values are dequantized integers (`gm.meta[DEQUANTIZED]`, handed to the
    partitions), so those stay compressed MAC weights."""
    labels = {id(getattr(gm, buffer)): label for buffer, label in gm.meta.get(WEIGHT_NAMES, {}).items()}
    dequantized = gm.meta.setdefault(DEQUANTIZED, Tracker())
    values: dict[fx.Node, Any] = {}
    for i, node in enumerate(list(gm.graph.nodes)):
        if node.op == "get_attr":
            assert isinstance(node.target, str), "a get_attr node's target is the attribute's name"
            values[node] = functools.reduce(getattr, node.target.split("."), gm)
        elif node.op == "call_function" and all(n in values for n in node.all_input_nodes):
            assert callable(node.target), "a call_function node's target is the function"
            args, kwargs = fx.node.map_arg(node.args, values.__getitem__), fx.node.map_arg(node.kwargs, values.__getitem__)
            with torch.no_grad():
                value = node.target(*args, **kwargs)
            dequantized.fold(op_key(node.target), args, kwargs, value)
            values[node] = value
            if node.users and isinstance(value, torch.Tensor):
                label = labels.get(id(value._base), node.name)  # a view of a weight (`t(w)`) keeps its name
                folded = constant_node(gm, f"_anec_folded_{i}", value, node, label)
                node.replace_all_uses_with(folded)
                values[folded] = value
    gm.graph.eliminate_dead_code()


PARTITION_PASS = "ane-partition"


def ops_by_node(module: ModuleOp, graph: fx.Graph, target: str) -> dict[fx.Node, list[Operation]]:
    """The ops each node became once the passes that precede partitioning have run.

    Passes give the ops they make the name of the op they replace (`ane.name`, suffixed after '#'),
    so each op is traced back to its FX node; constants are left out.
    """
    before_partition = GRAPH_PASSES[GRAPH_PASSES.index(PARTITION_PASS) - 1]
    run_pipeline(module, CompileOptions(target=target, emit=RUNTIME_EMIT, stop_after=before_partition))
    nodes = {n.name: n for n in graph.nodes}
    grouped: dict[fx.Node, list[Operation]] = {}
    for op in module.walk():
        name = op.attributes.get(NAME_ATTR)
        if isinstance(name, StringAttr) and not isinstance(op, ane.ConstOp) and (node := nodes.get(source_name(name.data))):
            grouped.setdefault(node, []).append(op)
    return grouped


@dataclass(frozen=True)
class NodeVerdict:
    """What one FX node became: why it cannot run on the ANE ("" when it can), its FLOPs, its op count."""

    reason: str
    flops: int
    ops: int


NO_OPS = NodeVerdict("", 0, 0)


def node_verdicts(module: ModuleOp, graph: fx.Graph, target: Target) -> dict[str, NodeVerdict]:
    """Each node's verdict, by node name: a node is ANE-capable when every op it became is legal on
    the target (`anec.legality`, the predicate the compiler partitions with)."""
    verdicts = {}
    for node, ops in ops_by_node(module, graph, target.arch).items():
        reason = next((f"{op.op_name.data} has no ANE equivalent" if isinstance(op, HostOp) else legality(op, target).reason
                       for op in ops if isinstance(op, HostOp) or not legality(op, target)), "")
        verdicts[node.name] = NodeVerdict(reason, sum(flops(op) for op in ops), len(ops))
    return verdicts


class AneSupport(OperatorSupportBase):
    """The partitioner's view of the verdicts: which nodes the ANE runs."""

    def __init__(self, verdicts: Mapping[str, NodeVerdict], target: Target):
        self.verdicts = verdicts
        self.target = target

    def verdict(self, node: fx.Node) -> NodeVerdict:
        """The verdict that places `node`: a tuple element is placed with the op that makes the tuple."""
        while node.target is operator.getitem and isinstance(node.args[0], fx.Node):
            node = node.args[0]
        return self.verdicts.get(node.name, NO_OPS)

    def reason(self, node: fx.Node) -> str:
        """Why `node` cannot run on the ANE ("" when it can)."""
        return "not an op" if node.op != "call_function" else self.verdict(node).reason

    def is_node_supported(self, submodules: Mapping[str, torch.nn.Module], node: fx.Node) -> bool:
        return self.reason(node) == ""

    def op_count(self, nodes: Any) -> int:
        """How many ops the nodes of a partition became."""
        return sum(self.verdicts.get(n.name, NO_OPS).ops for n in nodes)


class AnePartition(torch.nn.Module):
    """One ANE partition: compiled once by anec (or read from the compile cache), run through the
    anec runtime on each call."""

    def __init__(self, graph: fx.GraphModule, target: str, precision: str = "fp16", tolerance: float = REL_L2_MAX,
                 key: str | None = None):
        super().__init__()
        output = next(n for n in graph.graph.nodes if n.op == "output").args[0]
        self.returns_tuple = isinstance(output, list | tuple)
        self.graph, self.target, self.tolerance = graph, target, tolerance
        self.program: AnecFile | None = None
        self.key: str | None = None
        """The program's compile-cache key (`key` when the caller knows it, else the graph's)."""
        self.from_cache = False
        if precision != "auto":  # "auto" measures fp16 on the partition's own inputs: it compiles at the first call
            self.key = key or compile_cache.graph_key("partition", graph, target)
            if (hit := compile_cache.load(self.key)) is not None:
                self.program, self.from_cache = decode(hit, validate=False), True  # bytes anec encoded, written atomically
            else:
                self.program = compile_model(graph, target=target, emit=RUNTIME_EMIT).program
                compile_cache.store(self.key, encode(self.program))

    def forward(self, *args: torch.Tensor) -> Any:
        inputs = [to_numpy(a) for a in args]
        if self.program is None:
            self.program = compile_model(self.graph, target=self.target, emit=RUNTIME_EMIT, precision="auto", tolerance=self.tolerance,
                                         example_inputs=inputs).program
        results = run_file(self.program, inputs).values()
        outputs = [torch.from_numpy(y if y.flags.writeable else y.copy()) for y in results]
        return tuple(outputs) if self.returns_tuple else outputs[0]


def _guarded(forward: Callable, eager: Callable, opts: BackendOptions, report: GraphReport) -> Callable:
    """`forward`, falling back for good to `eager` (with one warning) if the anec runtime fails."""
    state = {"broken": False}

    def run(*args: Any) -> Any:
        if not state["broken"]:
            try:
                return forward(*args)
            except Exception as e:
                if opts.strict:
                    raise
                state["broken"] = True
                report.fall_back(_why(e))
                warnings.warn(f"anec: this graph runs eagerly in torch from now on: {_why(e)}", AnecFallbackWarning, stacklevel=2)
        return eager(*args)

    return run


watch_dynamo()  # the backend is loaded when torch.compile resolves it, before Dynamo traces anything
