"""FLOP counts: host ops weigh their real work, as their model's definition counts it."""

from __future__ import annotations

import math

from xdsl.dialects.builtin import TensorType, f32
from xdsl.ir import Block

from anec.analysis import flops
from anec.dialects.host import HostOp


def host_op(name: str, shapes: list[list[int]], result: list[int]) -> HostOp:
    block = Block(arg_types=[TensorType(f32, s) for s in shapes])
    return HostOp(name, block.args, [TensorType(f32, result)])


def lstm_definition_flops(steps: int, batch: int, inputs: int, hidden: int, gates: int = 4) -> int:
    """2 per multiply-add, gates·hidden rows times (input + hidden) columns, once per step and batch row."""
    return 2 * steps * batch * gates * hidden * (inputs + hidden)


def test_an_onnx_lstm_on_the_cpu_counts_its_matrix_products() -> None:
    op = host_op("onnx.LSTM", [[50, 2, 40], [1, 1024, 40], [1, 1024, 256]], [50, 1, 2, 256])
    assert flops(op) == lstm_definition_flops(50, 2, 40, 256)  # not one per output element (25 600)


def test_a_bidirectional_onnx_gru_counts_both_directions() -> None:
    op = host_op("onnx.GRU", [[10, 1, 8], [2, 48, 8], [2, 48, 16]], [10, 2, 1, 16])
    assert flops(op) == 2 * lstm_definition_flops(10, 1, 8, 16, gates=3)


def test_an_aten_onednn_lstm_layer_counts_its_two_weight_matrices_not_its_states() -> None:
    # input, weight_ih, weight_hh, bias_ih, bias_hh, h0 [batch, hidden], c0 [batch, hidden]
    op = host_op("aten.mkldnn_rnn_layer.default", [[7, 3, 40], [256, 40], [256, 64], [256], [256], [3, 64], [3, 64]], [7, 3, 64])
    assert flops(op) == lstm_definition_flops(7, 3, 40, 64)


def test_an_aten_lstm_counts_every_layers_weights_and_skips_its_states() -> None:
    # input, h0 and c0 [layers, batch, hidden], then (w_ih, w_hh, b_ih, b_hh) per layer
    shapes = [[5, 2, 8], [2, 2, 16], [2, 2, 16], [64, 8], [64, 16], [64], [64], [64, 16], [64, 16], [64], [64]]
    op = host_op("aten.lstm.input", shapes, [5, 2, 16])
    assert flops(op) == lstm_definition_flops(5, 2, 8, 16) + lstm_definition_flops(5, 2, 16, 16)


def test_host_matmul_conv_and_attention_count_multiply_adds() -> None:
    assert flops(host_op("aten.mm.default", [[32, 64], [64, 16]], [32, 16])) == 2 * 32 * 16 * 64
    assert flops(host_op("aten.addmm.default", [[16], [32, 64], [64, 16]], [32, 16])) == 2 * 32 * 16 * 64
    assert flops(host_op("onnx.Conv", [[1, 8, 10, 10], [4, 8, 3, 3]], [1, 4, 8, 8])) == 2 * (4 * 8 * 8) * (8 * 3 * 3)
    q = [2, 4, 16, 32]
    sdpa = flops(host_op("aten.scaled_dot_product_attention.default", [q, q, q], q))
    assert sdpa == 2 * 4 * (2 * 16 * 16 * 32 * 2 + 5 * 16 * 16)


def test_other_host_ops_count_one_operation_per_element() -> None:
    assert flops(host_op("aten.cumsum.default", [[4, 32]], [4, 32])) == math.prod([4, 32])
