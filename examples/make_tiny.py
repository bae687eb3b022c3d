"""Write examples/tiny.onnx: the small model the README's first command compiles.

A 32x32-image classifier — two convolutions, one self-attention block over the 256 pixel tokens,
a mean pool and a linear head — that ends in `TopK`, an op the Neural Engine has no equivalent
for, so the placement summary shows both an ANE segment and a CPU op with its reason.

The graph is written with `onnx.helper` from seeded numpy weights (no torch), so the file is
byte-for-byte the same on every machine; `tests/examples/test_examples.py` checks the shipped
file against this script's output.

    python examples/make_tiny.py [-o examples/tiny.onnx]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_OUTPUT = Path(__file__).with_name("tiny.onnx")
CLASSES = 10
WIDTH = 32
"""Channels after the second convolution = the attention's model width."""


def build() -> onnx.ModelProto:
    """The model, with weights drawn from numpy's generator seeded with 0."""
    rng = np.random.default_rng(0)
    weights: list[onnx.TensorProto] = []

    def weight(name: str, *shape: int, scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        std = scale if scale is not None else 1.0 / np.sqrt(fan_in)
        weights.append(numpy_helper.from_array((rng.standard_normal(shape) * std).astype(np.float32), name))
        return name

    def const(name: str, values: list[int] | list[float], dtype: type = np.int64) -> str:
        weights.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    node = helper.make_node
    nodes = [
        # stem: 3x32x32 -> 16x32x32 -> 32x16x16
        node("Conv", ["image", weight("stem.0.weight", 16, 3, 3, 3), weight("stem.0.bias", 16, scale=0.1)], ["c1"],
             name="stem.0", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        node("Relu", ["c1"], ["r1"], name="stem.1"),
        node("Conv", ["r1", weight("stem.2.weight", WIDTH, 16, 3, 3), weight("stem.2.bias", WIDTH, scale=0.1)], ["c2"],
             name="stem.2", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        node("Relu", ["c2"], ["r2"], name="stem.3"),
        # pixels as tokens: [1, 32, 16, 16] -> [1, 256, 32]
        node("Reshape", ["r2", const("tokens.shape", [1, WIDTH, 256])], ["flat"], name="tokens.reshape"),
        node("Transpose", ["flat"], ["tokens"], name="tokens.transpose", perm=[0, 2, 1]),
        # one pre-norm single-head self-attention block with a residual
        node("LayerNormalization", ["tokens", const("attn.norm.weight", [1.0] * WIDTH, np.float32),
                                    const("attn.norm.bias", [0.0] * WIDTH, np.float32)], ["normed"],
             name="attn.norm", axis=-1, epsilon=1e-5),
        node("MatMul", ["normed", weight("attn.q.weight", WIDTH, WIDTH)], ["q"], name="attn.q"),
        node("MatMul", ["normed", weight("attn.k.weight", WIDTH, WIDTH)], ["k"], name="attn.k"),
        node("MatMul", ["normed", weight("attn.v.weight", WIDTH, WIDTH)], ["v"], name="attn.v"),
        node("Transpose", ["k"], ["kt"], name="attn.kt", perm=[0, 2, 1]),
        node("MatMul", ["q", "kt"], ["scores"], name="attn.scores"),
        node("Mul", ["scores", const("attn.scale", [1.0 / np.sqrt(WIDTH)], np.float32)], ["scaled"], name="attn.scale"),
        node("Softmax", ["scaled"], ["probs"], name="attn.softmax", axis=-1),
        node("MatMul", ["probs", "v"], ["mixed"], name="attn.mix"),
        node("MatMul", ["mixed", weight("attn.out.weight", WIDTH, WIDTH)], ["projected"], name="attn.out"),
        node("Add", ["projected", weight("attn.out.bias", WIDTH, scale=0.1)], ["attended"], name="attn.out.bias"),
        node("Add", ["tokens", "attended"], ["block"], name="attn.residual"),
        # head: mean over tokens, linear classifier, the three best classes
        node("ReduceMean", ["block"], ["pooled"], name="pool", axes=[1], keepdims=0),
        node("Gemm", ["pooled", weight("head.weight", CLASSES, WIDTH), weight("head.bias", CLASSES, scale=0.1)], ["logits"],
             name="head", transB=1),
        node("TopK", ["logits", const("top3.k", [3])], ["scores_top3", "classes_top3"], name="top3", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        inputs=[helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        outputs=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES]),
                 helper.make_tensor_value_info("scores_top3", TensorProto.FLOAT, [1, 3]),
                 helper.make_tensor_value_info("classes_top3", TensorProto.INT64, [1, 3])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="anec examples/make_tiny.py")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the model")
    args = parser.parse_args()
    args.output.write_bytes(build().SerializeToString(deterministic=True))
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
