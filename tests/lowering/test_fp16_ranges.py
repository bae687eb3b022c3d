"""ane-fp16's range analysis without samples: one model per hazard class, flagged by op name with its
kind and verdict; a model without hazards gets no warning; declared and dtype-implied input ranges
change the verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import anec
from anec.cli import main
from anec.dialects.discardable import Fp16Flag
from anec.errors import AnecError
from anec.interpreter import entry_function, interpret
from anec.lowering.fp16_ranges import analyze, input_ranges

N = 256


def model(nodes: list, inits: dict[str, np.ndarray], shape: tuple[int, ...] = (1, N), dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", dtype, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def flags(m: onnx.ModelProto, **options) -> dict[str, Fp16Flag]:
    """The range analysis's flags by op name (no samples)."""
    report = anec.compile(m, target="m1", emit="ir", **options).report
    return dict(report.fp16_flags)


def alternating(value: float) -> np.ndarray:
    return np.where(np.arange(N) % 2 == 0, value, -value).reshape(1, N)


def test_a_square_past_fp16_for_every_declared_input_is_proven_overflow() -> None:
    m = model([helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("Mul", ["sq", "half"], ["y"])], {"half": [0.5]})
    found = flags(m, input_ranges={"x": (1000.0, 2000.0)})
    assert found["sq"].kind == "overflow" and found["sq"].verdict == "proven"
    assert "every input in range" in found["sq"].why
    assert "y" not in found  # flagged where the overflow enters, not downstream


def test_a_sum_whose_bound_passes_fp16_and_witnesses_come_near_is_possible_overflow() -> None:
    """w: +300 three times in four, else -300. Bound 256·300 = 76800; all-ones reaches 38400."""
    w = np.where(np.arange(N) % 4 == 0, -300.0, 300.0).reshape(1, N)
    m = model([helper.make_node("Mul", ["x", "w"], ["xw"]), helper.make_node("ReduceSum", ["xw"], ["y"], keepdims=1)], {"w": w})
    found = flags(m)
    assert found["y"].kind == "overflow" and found["y"].verdict == "possible"
    assert found["y"].bound == pytest.approx(N * 300.0)
    assert "witnesses reached 3.84e+04" in found["y"].why and "assuming 'x' in [-1, 1]" in found["y"].why


def test_a_loose_bound_the_witnesses_stay_far_from_is_not_reported() -> None:
    """Alternating ±300: the same bound, but every witness sums to a few thousand at most."""
    m = model([helper.make_node("Mul", ["x", "w"], ["xw"]), helper.make_node("ReduceSum", ["xw"], ["y"], keepdims=1)],
              {"w": alternating(300.0)})
    assert flags(m) == {}


def test_a_matmul_sum_past_the_mac_port_is_proven_mac_saturation() -> None:
    m = model([helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Relu", ["mm"], ["y"])],
              {"w": np.full((N, 4), 200.0)})
    found = flags(m)
    assert found["mm"].kind == "MAC saturation" and found["mm"].verdict == "proven"
    assert found["mm"].bound == pytest.approx(N * 200.0)  # the actual weights: Σ|w|·max|x|
    assert "every input at the top of its range" in found["mm"].why


def test_a_reduction_whose_running_sum_can_pass_fp16_is_a_partial_sum_overflow() -> None:
    """Terms near +600 then near -600: the sum stays small, the running sum does not."""
    offsets = np.where(np.arange(N) < N // 2, 600.0, -600.0).reshape(1, N)
    m = model([helper.make_node("Add", ["x", "c"], ["t"]), helper.make_node("ReduceSum", ["t"], ["y"], keepdims=1)], {"c": offsets})
    found = flags(m)
    assert found["y"].kind == "partial-sum overflow" and found["y"].verdict == "possible"


def test_a_divisor_that_can_round_to_zero_is_an_underflow() -> None:
    m = model([helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("Add", ["sq", "eps"], ["d"]),
               helper.make_node("Div", ["x", "d"], ["y"])], {"eps": [1e-9]})
    found = flags(m)
    assert found["y"].kind == "underflow" and found["y"].bound == pytest.approx(1e-9)
    assert found["y"].verdict == "proven" and "seeded input" in found["y"].why  # some x² + 1e-9 < 2^-25 among 256 draws


def test_a_log_of_values_below_fp16s_smallest_subnormal_is_proven_underflow() -> None:
    m = model([helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["s", "tiny"], ["p"]),
               helper.make_node("Log", ["p"], ["y"])], {"tiny": [1e-9]})
    found = flags(m)
    assert found["y"].kind == "underflow" and found["y"].verdict == "proven"


def test_a_conv_net_with_relu_and_norm_on_unit_inputs_gets_no_warning() -> None:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("InstanceNormalization", ["r1", "s", "t"], ["n1"]),
             helper.make_node("Conv", ["n1", "w2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Sigmoid", ["c2"], ["g"]),
             helper.make_node("GlobalAveragePool", ["g"], ["y"])]
    inits = {"w1": rng.standard_normal((8, 3, 3, 3)) * 0.3, "b1": np.zeros(8), "s": np.ones(8), "t": np.zeros(8),
             "w2": rng.standard_normal((4, 8, 3, 3)) * 0.3}
    m = model(nodes, inits, shape=(1, 3, 16, 16))
    report = anec.compile(m, target="m1", emit="ir", input_ranges={"x": (0.0, 1.0)}).report
    assert report.fp16_warnings == []


def test_a_declared_range_changes_the_verdict() -> None:
    m = model([helper.make_node("Mul", ["x", "k"], ["a"]), helper.make_node("Mul", ["a", "a"], ["y"])], {"k": [100.0]})
    assert flags(m) == {}  # [-1, 1] by default: at most 1e4
    found = flags(m, input_ranges={"x": (0.0, 10.0)})
    assert found["y"].kind == "overflow" and found["y"].verdict == "proven"


def test_a_uint8_input_is_bounded_by_its_dtype() -> None:
    m = model([helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT), helper.make_node("Mul", ["f", "k"], ["y"])],
              {"k": [300.0]}, dtype=TensorProto.UINT8)
    found = flags(m)
    assert found["y"].kind == "overflow" and found["y"].verdict == "proven"  # 255 · 300
    assert "assuming" not in found["y"].why
    m_float = model([helper.make_node("Mul", ["x", "k"], ["y"])], {"k": [300.0]})
    assert flags(m_float) == {}


def test_an_index_input_is_bounded_by_the_values_it_selects() -> None:
    """A one-hot of int32 byte values (x == arange(257)) times large weights: the witness draws bytes
    from the constant's range, not int32's."""
    table = np.arange(257, dtype=np.int32).reshape(1, 1, 257)
    graph = helper.make_graph(
        [helper.make_node("Unsqueeze", ["x", "ax"], ["u"]), helper.make_node("Equal", ["u", "table"], ["eq"]),
         helper.make_node("Cast", ["eq"], ["oh"], to=TensorProto.FLOAT), helper.make_node("ReduceSum", ["oh", "ax1"], ["hist"], keepdims=0),
         helper.make_node("Mul", ["hist", "k"], ["y"])],
        "m", [helper.make_tensor_value_info("x", TensorProto.INT32, [1, 512])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([2], np.int64), "ax"),
         numpy_helper.from_array(np.array([1], np.int64), "ax1"), numpy_helper.from_array(np.array([200.0], np.float32), "k")])
    found = flags(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert found["y"].kind == "overflow" and found["y"].verdict == "proven"  # 512 equal bytes · 200
    assert "assuming" not in found["y"].why


def test_report_json_has_the_fp16_section() -> None:
    m = model([helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("Mul", ["sq", "half"], ["y"])], {"half": [0.5]})
    report = anec.compile(m, target="m1", emit="ir", input_ranges={"x": (1000.0, 2000.0)}).report
    section = report.to_json()["fp16"]
    assert section["flags"][0]["op"] == "sq" and section["flags"][0]["verdict"] == "proven"


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(model([helper.make_node("Mul", ["x", "k"], ["a"]), helper.make_node("Mul", ["a", "a"], ["y"])], {"k": [100.0]}), path)
    return path


def compile_cli(path: Path, *extra: str) -> list[str]:
    return ["compile", str(path), "--emit", "ir", "-o", str(path.with_suffix(".mlir")), *extra]


def test_cli_input_range_flags_the_overflow(onnx_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(compile_cli(onnx_file, "--input-range", "x=0,10")) == 0
    out = capsys.readouterr().out
    assert "fp16 range analysis: 1 proven" in out and "overflow" in out


@pytest.mark.parametrize("text", ["x=1", "x=2,1", "=0,1", "x=a,b", "x=0,inf"])
def test_cli_input_range_malformed_is_one_line_error(onnx_file: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    assert main(compile_cli(onnx_file, "--input-range", text)) == 2
    assert "--input-range" in capsys.readouterr().err
    assert not onnx_file.with_suffix(".mlir").exists()


def test_cli_input_range_of_an_unknown_input_is_an_error(onnx_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(compile_cli(onnx_file, "--input-range", "z=0,1")) == 2
    assert "'z'" in capsys.readouterr().err


@pytest.mark.parametrize(("arrays", "message"), [
    ({"z": np.zeros((1, N), np.float32)}, "lack 'x'"),
    ({"x": np.zeros((1, N), np.float32), "z": np.zeros(1, np.float32)}, "name 'z'"),
    ({"x": np.zeros((1, 3), np.float32)}, "has shape [1, 3]"),
])
def test_cli_example_inputs_must_match_the_model(onnx_file: Path, capsys: pytest.CaptureFixture[str], arrays: dict, message: str) -> None:
    samples = onnx_file.with_name("samples.npz")
    np.savez(samples, **arrays)
    assert main(compile_cli(onnx_file, "--example-inputs", str(samples))) == 2
    assert message in capsys.readouterr().err


def test_cli_example_inputs_attribute_the_error(onnx_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = onnx_file.with_name("samples.npz")
    np.savez(samples, x=np.full((1, N), 5.0, np.float32))
    assert main(compile_cli(onnx_file, "--example-inputs", str(samples))) == 0
    assert "fp16 on the sample inputs: error enters at" in capsys.readouterr().out


def test_cli_example_inputs_not_an_npz_or_with_calibrate_is_an_error(onnx_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    single = onnx_file.with_name("x.npy")
    np.save(single, np.zeros((1, N), np.float32))
    assert main(compile_cli(onnx_file, "--example-inputs", str(single))) == 2
    assert "--example-inputs" in capsys.readouterr().err
    assert main(compile_cli(onnx_file, "--example-inputs", str(single), "--calibrate")) == 2
    assert "both" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# Soundness: every value a run takes lies inside its interval
# ------------------------------------------------------------------------------------------------


def _sound_model() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    inits = {"w1": rng.standard_normal((8, 2, 3, 3)), "b1": rng.standard_normal(8), "w2": rng.standard_normal((6, 8, 1, 1)),
             "g16": rng.standard_normal(16), "b16": rng.standard_normal(16), "wq": rng.standard_normal((16, 16)),
             "shape": np.array([1, 6, 16]), "eps": [1e-3]}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], group=2),
        helper.make_node("Tanh", ["c1"], ["a1"]),
        helper.make_node("Conv", ["a1", "w2"], ["c2"]),
        helper.make_node("Reshape", ["c2", "shape"], ["r"]),
        helper.make_node("LayerNormalization", ["r", "g16", "b16"], ["ln"], axis=-1),
        helper.make_node("MatMul", ["ln", "wq"], ["q"]),
        helper.make_node("MatMul", ["q", "qt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "q"], ["ctx"]),
        helper.make_node("Sigmoid", ["ctx"], ["s"]),
        helper.make_node("Mul", ["ctx", "ctx"], ["sq"]),
        helper.make_node("ReduceSum", ["sq"], ["ss"], keepdims=1),
        helper.make_node("Add", ["ss", "eps"], ["d"]),
        helper.make_node("Sqrt", ["d"], ["n"]),
        helper.make_node("Div", ["ctx", "n"], ["u"]),
        helper.make_node("Mul", ["u", "s"], ["us"]),
        helper.make_node("Sign", ["ctx"], ["sg"]),
        helper.make_node("Add", ["us", "sg"], ["y"]),
    ]
    nodes.insert(6, helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1]))
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(v, np.int64 if k == "shape" else np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_every_value_of_a_run_lies_in_its_interval() -> None:
    module = anec.compile(_sound_model(), emit="ir", stop_after="ane-partition").ir
    ranges = input_ranges(entry_function(module), {"x": (-2.0, 3.0)})
    analysis = analyze(module, ranges)
    rng = np.random.default_rng(0)
    checked = 0
    for x in [rng.uniform(-2, 3, (1, 4, 4, 4)), np.full((1, 4, 4, 4), 3.0), np.full((1, 4, 4, 4), -2.0),
              rng.choice([-2.0, 3.0], (1, 4, 4, 4))]:
        def observe(op, outs) -> None:
            nonlocal checked
            for r, y in zip(op.results, outs):
                if r in analysis.intervals and np.asarray(y).dtype.kind == "f":
                    iv = analysis.intervals[r]
                    lo, hi = np.broadcast_to(iv.lo, y.shape), np.broadcast_to(iv.hi, y.shape)
                    slack = 1e-5 * np.maximum(1.0, np.abs(y))
                    assert (y >= lo - slack).all() and (y <= hi + slack).all(), f"{op.name} {op.attributes.get('ane.name')}"
                    checked += 1

        interpret(module, [x.astype(np.float32)], precision="f32", segments="f32", observe=observe)
    assert checked > 4 * 15


def test_api_input_ranges_are_checked() -> None:
    m = model([helper.make_node("Relu", ["x"], ["y"])], {})
    with pytest.raises(AnecError, match="no input of"):
        anec.compile(m, emit="ir", input_ranges={"z": (0.0, 1.0)})
    with pytest.raises(AnecError, match="finite bounds, low first"):
        anec.compile(m, emit="ir", input_ranges={"x": (1.0, 0.0)})
