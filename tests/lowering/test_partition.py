"""ane-partition: segments hold only legal ops, are as few as the graph allows, and keep meaning."""

from __future__ import annotations

import io

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.printer import Printer

from anec.context import make_context
from anec.descriptors.program import FIRST_IO_SLOT, SLOTS
from anec.dialects import ane, host
from anec.dialects.ane import tensor
from anec.interpreter import interpret
from anec.legality import legality
from anec.lowering.partition import PartitionPass
from anec.targets import get_target
from anec.weights import clone_module

M1 = get_target("m1")


def random_graph(seed: int, size: int = 12) -> ModuleOp:
    """A random DAG of ANE ops (relu, add) and CPU ops (onnx.Abs), interleaved in program order."""
    rng = np.random.default_rng(seed)
    t = tensor([2, 3])
    block = Block(arg_types=[t, t])
    values: list[SSAValue] = list(block.args)
    for k in range(size):
        kind = rng.choice(["relu", "add", "cpu"], p=[0.35, 0.35, 0.3])
        a, b = (values[int(i)] for i in rng.integers(0, len(values), 2))
        if kind == "relu":
            op: Operation = ane.ReluOp(a)
        elif kind == "add":
            op = ane.AddOp(a, b)
        else:
            op = host.HostOp("onnx.Abs", [a], [t], version=13)
        op.attributes["ane.name"] = StringAttr(f"op{k}")
        block.add_op(op)
        values.append(op.results[0])
    block.add_op(func.ReturnOp(values[-1], values[-2]))
    return ModuleOp([func.FuncOp("main", ([t, t], [t, t]), Region(block))])


def printed(module: ModuleOp) -> str:
    out = io.StringIO()
    Printer(stream=out).print_op(module)
    return out.getvalue()


def partitioned(module: ModuleOp, **options) -> ModuleOp:
    after = clone_module(module)
    PartitionPass(**options).apply(make_context(), after)
    after.verify()
    return after


def main_ops(module: ModuleOp) -> list[Operation]:
    return list(next(iter(module.ops)).body.block.ops)  # type: ignore[attr-defined]


def most_ane_runs_on_a_path(module: ModuleOp) -> int:
    """The fewest segments any partition can have: the most separate ANE runs one path goes through."""
    runs: dict[Operation, int] = {}
    for op in main_ops(module):
        if isinstance(op, func.ReturnOp | ane.ConstOp):
            continue
        on_ane = legality(op, M1).ok
        preds = [(runs[v.owner], legality(v.owner, M1).ok) for v in op.operands if v.owner in runs]
        if on_ane:
            runs[op] = max([r if p_ane else r + 1 for r, p_ane in preds], default=1)
        else:
            runs[op] = max([r for r, _ in preds], default=0)
    return max(runs.values(), default=0)


@pytest.mark.parametrize("seed", range(25))
def test_random_graphs_keep_their_meaning_with_the_fewest_segments(seed: int) -> None:
    module = random_graph(seed)
    after = partitioned(module)
    segments = [op for op in main_ops(after) if isinstance(op, ane.SegmentOp)]
    assert len(segments) == most_ane_runs_on_a_path(module)
    for seg in segments:
        for op in seg.body.block.ops:
            assert isinstance(op, ane.YieldOp | ane.ConstOp) or legality(op, M1).ok
    for op in main_ops(after):
        if isinstance(op, host.HostOp):
            assert "no ANE equivalent" in op.attributes["ane.reason"].data
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(2)]
    for before, now in zip(interpret(module, inputs), interpret(after, inputs, segments="f32")):
        np.testing.assert_array_equal(before, now)


def test_independent_cpu_ops_do_not_split_a_segment() -> None:
    """relu, then a CPU op nobody on the ANE needs, then add: one segment, not two."""
    t = tensor([4])
    block = Block(arg_types=[t])
    x = block.args[0]
    relu = ane.ReluOp(x)
    cpu = host.HostOp("onnx.Abs", [x], [t], version=13)
    add = ane.AddOp(relu.result, x)
    block.add_ops([relu, cpu, add, func.ReturnOp(add.result, cpu.outputs[0])])
    after = partitioned(ModuleOp([func.FuncOp("main", ([t], [t, t]), Region(block))]))
    assert sum(isinstance(op, ane.SegmentOp) for op in main_ops(after)) == 1


def test_partition_is_idempotent() -> None:
    once = partitioned(random_graph(3))
    twice = partitioned(once)
    assert printed(once) == printed(twice)


def test_min_segment_ops_sends_short_runs_to_the_cpu_and_says_why() -> None:
    """relu | cpu | relu relu relu relu with min-segment-ops=4: the lone relu joins the CPU."""
    t = tensor([4])
    block = Block(arg_types=[t])
    first = ane.ReluOp(block.args[0])
    cpu = host.HostOp("onnx.Abs", [first.result], [t], version=13)
    chain: list[Operation] = [first, cpu]
    for _ in range(4):
        chain.append(ane.ReluOp(chain[-1].results[0]))
    block.add_ops([*chain, func.ReturnOp(chain[-1].results[0])])
    module = ModuleOp([func.FuncOp("main", ([t], [t]), Region(block))])
    after = partitioned(module, min_segment_ops=4)
    (segment,) = [op for op in main_ops(after) if isinstance(op, ane.SegmentOp)]
    assert sum(isinstance(op, ane.ReluOp) for op in segment.body.block.ops) == 4
    (lone,) = [op for op in main_ops(after) if isinstance(op, ane.ReluOp)]
    assert "a run of 1 ANE op(s) is below min-segment-ops=4" in lone.attributes["ane.reason"].data
    x = np.array([-1, 2, -3, 4], np.float32)
    np.testing.assert_array_equal(interpret(after, [x], segments="f32")[0], np.abs(np.maximum(x, 0)))


def test_bert_tiny_partitions_into_one_encoder_segment_and_keeps_its_meaning(bert_tiny_module: ModuleOp) -> None:
    """Only the embedding lookup and the integer mask cast stay on the CPU; fp16 stays within 1e-2."""
    from tests import zoo

    after = partitioned(bert_tiny_module)
    segments = [op for op in main_ops(after) if isinstance(op, ane.SegmentOp)]
    cpu = [op for op in main_ops(after) if not isinstance(op, ane.SegmentOp | ane.ConstOp | func.ReturnOp)]
    assert len(segments) == 1 and len(cpu) == 2
    feeds = zoo.inputs("bert-tiny")
    (before,) = interpret(bert_tiny_module, feeds)
    (exact,) = interpret(after, feeds, segments="f32")
    (fp16,) = interpret(after, feeds, segments="f16")
    np.testing.assert_array_equal(before, exact)
    assert np.linalg.norm(fp16 - before) / np.linalg.norm(before) < 1e-2


# ------------------------------------------------------------------------------------------------
# --keep-fp32
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["total", "ReduceSum", "ane.reduce_sum"])
def test_keep_fp32_by_name_or_type_runs_the_op_on_the_cpu_in_float32_and_fixes_the_answer(entry: str) -> None:
    import anec
    from tests.precision_models import scaled_sum, unit_inputs

    x = unit_inputs()
    want = (x.astype(np.float64) * 1000).sum(-1, keepdims=True)
    assert not np.isfinite(anec.compile(scaled_sum(), emit="descriptors").run({"x": x})["y"]).all()  # fp16 overflows
    compiled = anec.compile(scaled_sum(), emit="descriptors", keep_fp32=[entry])
    kept = {r.name: r for r in compiled.report.host_ops}
    assert kept["total"].op == "reduce_sum" and set(kept) <= {"total", "total#layout"}  # and the reshape the node became
    assert all(r.reason.startswith("kept in float32 by --keep-fp32") for r in kept.values())
    np.testing.assert_allclose(compiled.run({"x": x})["y"], want, rtol=1e-3)


def test_keep_fp32_by_source_name_keeps_every_op_the_node_became() -> None:
    import anec
    from tests.precision_models import scaled_sum

    compiled = anec.compile(scaled_sum(unscale=True), emit="ir", keep_fp32=["unscale"])
    assert {r.name for r in compiled.report.host_ops} == {"unscale", "unscale#layout"}


def test_keep_fp32_naming_no_op_is_an_error_with_close_matches() -> None:
    import anec
    from anec.errors import AnecError
    from tests.precision_models import scaled_sum

    with pytest.raises(AnecError, match=r"--keep-fp32 'ReduceSun' names no op.*did you mean ReduceSum, ane\.reduce_sum"):
        anec.compile(scaled_sum(), emit="ir", keep_fp32=["ReduceSun"])


def _copy_between_cpu_ops_model():
    """conv | Hardmax (CPU) | transpose, reshape (copies) | Hardmax (CPU) | conv."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32) / 8, "w"),
               numpy_helper.from_array(np.array([1, 8, 256, 1], np.int64), "flat")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="conv_in", pads=[1, 1, 1, 1]),
             helper.make_node("Hardmax", ["a"], ["b"], name="hardmax_in"),
             helper.make_node("Transpose", ["b"], ["c"], name="swap", perm=[0, 1, 3, 2]),
             helper.make_node("Reshape", ["c", "flat"], ["d"], name="flatten"),
             helper.make_node("Hardmax", ["d"], ["e"], name="hardmax_out"),
             helper.make_node("Conv", ["e", "w"], ["y"], name="conv_out", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "copies", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 256, 1])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_copy_only_segment_between_cpu_ops_runs_on_the_cpu_when_its_dispatch_costs_more() -> None:
    """Issue 23: a transpose and a reshape between two CPU ops paid a whole ANE dispatch (0.25 ms on
    an M1) to move 4 KB. Now they run with the CPU ops: two dispatches instead of three, and the copy
    is predicted below the dispatch it no longer pays."""
    import anec

    compiled = anec.compile(_copy_between_cpu_ops_model(), target="m1", emit="descriptors")
    report = compiled.report
    assert report.segments == 2
    copies = [r for r in report.ops if r.name in ("swap", "flatten")]
    assert copies and all(r.placement == "host" and "only copies data" in r.reason for r in copies)
    assert sum(r.predicted_s for r in copies) < M1.perf.dispatch_floor_s.value
    import onnxruntime

    model = _copy_between_cpu_ops_model()
    x = np.random.default_rng(1).standard_normal((1, 8, 16, 16)).astype(np.float32) * 4
    (want,) = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = compiled.run([x])["y"].astype(np.float64)
    assert np.linalg.norm(got - want) <= 5e-2 * np.linalg.norm(want)  # Hardmax of fp16 sums may pick a near tie


def test_a_segment_with_more_inputs_and_outputs_than_buffer_slots_is_cut_into_runs_that_fit() -> None:
    """20 independent relus (a KV cache's layers in and out): 40 values cross, a program has 28 slots."""
    t = tensor([4])
    block = Block(arg_types=[t] * 20)
    relus = [ane.ReluOp(x) for x in block.args]
    block.add_ops([*relus, func.ReturnOp(*(r.result for r in relus))])
    after = partitioned(ModuleOp([func.FuncOp("main", ([t] * 20, [t] * 20), Region(block))]))
    segments = [op for op in main_ops(after) if isinstance(op, ane.SegmentOp)]
    assert len(segments) == 2
    assert all(len(s.inputs) + len(s.outputs) <= SLOTS - FIRST_IO_SLOT for s in segments)
    xs = [np.full(4, i - 10, np.float32) for i in range(20)]
    for got, x in zip(interpret(after, xs, segments="f32"), xs, strict=True):
        np.testing.assert_array_equal(got, np.maximum(x, 0))


def test_a_chain_too_wide_for_one_program_keeps_internal_values_internal() -> None:
    """30 inputs summed in a chain: the longest run that fits takes the inputs it can, and the
    partial sum it passes on is one more input of the next run, not one output per add."""
    t = tensor([4])
    block = Block(arg_types=[t] * 30)
    total = block.args[0]
    adds = []
    for x in block.args[1:]:
        adds.append(ane.AddOp(total, x))
        total = adds[-1].result
    block.add_ops([*adds, func.ReturnOp(total)])
    after = partitioned(ModuleOp([func.FuncOp("main", ([t] * 30, [t]), Region(block))]))
    segments = [op for op in main_ops(after) if isinstance(op, ane.SegmentOp)]
    assert [len(s.outputs) for s in segments] == [1, 1]
    assert all(len(s.inputs) + len(s.outputs) <= SLOTS - FIRST_IO_SLOT for s in segments)
    xs = [np.full(4, i, np.float32) for i in range(30)]
    np.testing.assert_array_equal(interpret(after, xs, segments="f32")[0], np.full(4, sum(range(30)), np.float32))
