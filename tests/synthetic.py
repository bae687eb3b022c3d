"""Synthetic ONNX models, built in plain ONNX: shapes real models have that the zoo lacks.

    python -m tests.synthetic NAME OUT.onnx     # write one (then: anec compile OUT.onnx --timings)

`pitch-k1` is a CREPE-like pitch tracker whose 1-D convolutions are written the way Keras ports
write them, as (K, 1) kernels on (N, C, T, 1) tensors; `pitch-1k` is the same network as (1, K)
kernels on (N, C, 1, T). Both start with the 1-channel, 512-tap, stride-4 convolution over the raw
audio frame. `speaker-lstm` is a GE2E-style speaker encoder: a 3-layer 40→256 LSTM over 160 mel
frames whose last hidden state is projected and L2-normalised; the importer unrolls it into thousands
of ops. Weights are seeded; the models are byte-deterministic.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from onnx import ModelProto, TensorProto, helper, numpy_helper

PITCH_LAYERS = ((1024, 512, 4), (128, 64, 1), (128, 64, 1), (128, 64, 1), (256, 64, 1), (512, 64, 1))
"""(output channels, kernel taps, stride) of CREPE-full's convolutions; each is followed by a
batch norm, a ReLU and a 2-wide max pool."""

FRAME = 1024
CLASSES = 360


def pitch_tracker(batch: int, time_on_height: bool, layers: tuple[tuple[int, int, int], ...] = PITCH_LAYERS,
                  frame: int = FRAME, classifier: bool = True) -> ModelProto:
    """The CREPE-like stack of `layers` over `batch` frames of `frame` samples; `time_on_height` puts
    time on H with (K, 1) kernels, otherwise on W with (1, K) kernels. Without the `classifier` the
    model ends at the last pool."""
    rng = np.random.default_rng(0)

    def oriented(k: int) -> list[int]:
        return [k, 1] if time_on_height else [1, k]

    def pads(before: int, after: int) -> list[int]:
        return [before, 0, after, 0] if time_on_height else [0, before, 0, after]

    nodes, weights = [], []
    x, channels, length = "frame", 1, frame
    for i, (out, taps, stride) in enumerate(layers):
        w = (rng.standard_normal((out, channels, *oriented(taps))) / np.sqrt(channels * taps)).astype(np.float32)
        weights += [numpy_helper.from_array(w, f"conv{i}.w"), numpy_helper.from_array(np.zeros(out, np.float32), f"conv{i}.b")]
        total = max((-(-length // stride) - 1) * stride + taps - length, 0)  # Keras "same" padding
        nodes.append(helper.make_node("Conv", [x, f"conv{i}.w", f"conv{i}.b"], [f"conv{i}"], name=f"convolution_{i}",
                                      kernel_shape=oriented(taps), strides=oriented(stride), pads=pads(total // 2, total - total // 2)))
        scale, shift = (rng.uniform(0.5, 1.5, out).astype(np.float32), rng.uniform(-0.1, 0.1, out).astype(np.float32))
        weights += [numpy_helper.from_array(scale, f"bn{i}.scale"), numpy_helper.from_array(shift, f"bn{i}.bias"),
                    numpy_helper.from_array(np.zeros(out, np.float32), f"bn{i}.mean"),
                    numpy_helper.from_array(np.ones(out, np.float32), f"bn{i}.var")]
        nodes.append(helper.make_node("BatchNormalization", [f"conv{i}", f"bn{i}.scale", f"bn{i}.bias", f"bn{i}.mean", f"bn{i}.var"],
                                      [f"bn{i}"], name=f"batch_norm_{i}"))
        nodes.append(helper.make_node("Relu", [f"bn{i}"], [f"relu{i}"], name=f"relu_{i}"))
        nodes.append(helper.make_node("MaxPool", [f"relu{i}"], [f"pool{i}"], name=f"max_pool_{i}", kernel_shape=oriented(2),
                                      strides=oriented(2)))
        x, channels, length = f"pool{i}", out, -(-length // stride) // 2
    output = helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch, channels, length, 1] if time_on_height else [batch, channels, 1, length])
    if classifier:
        w = (rng.standard_normal((channels * length, CLASSES)) / np.sqrt(channels * length)).astype(np.float32)
        weights += [numpy_helper.from_array(w, "classifier.w"), numpy_helper.from_array(np.array([batch, -1], np.int64), "flat")]
        nodes += [helper.make_node("Reshape", [x, "flat"], ["flattened"], name="flatten"),
                  helper.make_node("MatMul", ["flattened", "classifier.w"], ["logits"], name="classifier"),
                  helper.make_node("Sigmoid", ["logits"], ["pitch"], name="activation")]
        output = helper.make_tensor_value_info("pitch", TensorProto.FLOAT, [batch, CLASSES])
    shape = [batch, 1, frame, 1] if time_on_height else [batch, 1, 1, frame]
    graph = helper.make_graph(nodes, "pitch_tracker", [helper.make_tensor_value_info("frame", TensorProto.FLOAT, shape)], [output], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def speaker_encoder(frames: int = 160, mels: int = 40, hidden: int = 256, layers: int = 3) -> ModelProto:
    """A GE2E-style speaker encoder as torch exports it: `layers` stacked LSTM nodes over `frames`
    frames of `mels` mel bands (batch 1, layout 0), then Linear, ReLU and L2 normalisation of the
    last layer's final hidden state."""
    rng = np.random.default_rng(0)
    nodes, weights = [], [numpy_helper.from_array(np.array([1], np.int64), "dir_axis")]
    x, size = "mels", mels
    for i in range(layers):
        scale = 1 / np.sqrt(hidden)
        for name, shape in ((f"lstm{i}.w", (1, 4 * hidden, size)), (f"lstm{i}.r", (1, 4 * hidden, hidden)), (f"lstm{i}.b", (1, 8 * hidden))):
            weights.append(numpy_helper.from_array(rng.uniform(-scale, scale, shape).astype(np.float32), name))
        nodes.append(helper.make_node("LSTM", [x, f"lstm{i}.w", f"lstm{i}.r", f"lstm{i}.b"], [f"lstm{i}.y", f"lstm{i}.h"],
                                      name=f"lstm_{i}", hidden_size=hidden))
        nodes.append(helper.make_node("Squeeze", [f"lstm{i}.y", "dir_axis"], [f"lstm{i}.out"], name=f"squeeze_{i}"))
        x, size = f"lstm{i}.out", hidden
    w = (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
    weights += [numpy_helper.from_array(w, "linear.w"), numpy_helper.from_array(np.zeros(hidden, np.float32), "linear.b"),
                numpy_helper.from_array(np.array([1, hidden], np.int64), "state_shape")]
    nodes += [helper.make_node("Reshape", [f"lstm{layers - 1}.h", "state_shape"], ["embedding_in"], name="final_state"),
              helper.make_node("Gemm", ["embedding_in", "linear.w", "linear.b"], ["linear"], name="linear"),
              helper.make_node("Relu", ["linear"], ["relu"], name="relu"),
              helper.make_node("LpNormalization", ["relu"], ["embedding"], name="normalize", axis=-1, p=2)]
    graph = helper.make_graph(nodes, "speaker_encoder", [helper.make_tensor_value_info("mels", TensorProto.FLOAT, [frames, 1, mels])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, hidden])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


MODELS: dict[str, Callable[[], ModelProto]] = {
    "pitch-k1-b8": lambda: pitch_tracker(8, time_on_height=True),
    "pitch-1k-b8": lambda: pitch_tracker(8, time_on_height=False),
    "pitch-k1-b1": lambda: pitch_tracker(1, time_on_height=True),
    "speaker-lstm": speaker_encoder,
}
"""The synthetic cases by name (what `benchmarks/compile_time.py --synthetic` compiles)."""


def write(name: str, path: Path) -> Path:
    path.write_bytes(MODELS[name]().SerializeToString())
    return path


if __name__ == "__main__":
    write(sys.argv[1], Path(sys.argv[2]))
