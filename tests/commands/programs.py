"""A small .anec program for the command tests: conv + ReLU, a host op, conv + ReLU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anec.descriptors.binary import encode
from anec.descriptors.build import anec_file
from anec.dialects import ane
from anec.pipeline import lower_segments
from anec.sim.builders import host_stage, segment, stages_module


def conv_relu(b, x):
    return [b.add(ane.ReluOp(b.add(ane.ConvOp(x[0], b.random((8, 8, 3, 3), 0.2), pads=[1, 1, 1, 1]), )))]


def write_program(folder: Path) -> tuple[Path, Path]:
    """(the .anec file, an input .npy for x0)."""
    module = stages_module([(1, 8, 6, 6)], [segment(conv_relu), host_stage("onnx.Neg"), segment(conv_relu)])
    program = folder / "model.anec"
    program.write_bytes(encode(anec_file(lower_segments(module, "h13"), "h13")))
    x = folder / "x.npy"
    np.save(x, np.random.default_rng(0).standard_normal((1, 8, 6, 6)).astype(np.float32))
    return program, x
