"""The lowering passes in the compile driver: every stage printable and parseable, stoppable."""

from __future__ import annotations

import io
import re

import numpy as np
from xdsl.parser import Parser

from anec.context import make_context
from anec.dialects import ane
from anec.pipeline import PIPELINES, CompileOptions, run_pipeline
from anec.weights import clone_module
from tests.lowering.graphs import graph, ops_named


def _linear_block(e, x):
    rng = np.random.default_rng(0)
    y = e.add(ane.AddOp(e.add(ane.MatmulOp(x, e.constant(rng.standard_normal((1, 32, 60)).astype(np.float32)))),
                    e.constant(rng.standard_normal((1, 1, 60)).astype(np.float32))))  # 60 features: padded rows in (B, S, C)
    return e.add(ane.LayerNormOp(e.add(ane.GeluOp(y)), e.constant(np.ones(60, np.float32)), e.constant(np.zeros(60, np.float32)),
                             axes=[2], epsilon=1e-12))


def test_print_ir_after_all_prints_every_pass_in_parseable_form() -> None:
    module = graph([(1, 16, 32)], _linear_block)
    out = io.StringIO()
    run_pipeline(module, CompileOptions(emit="descriptors", print_ir_after_all=True), out=out)
    chunks = re.split(r"// -----// IR after (\S+) //----- //\n", out.getvalue())[1:]
    names = chunks[0::2]
    assert tuple(names) == PIPELINES["descriptors"]
    for name, text in zip(names, chunks[1::2]):
        parsed = Parser(make_context(), text).parse_module()
        parsed.verify()
        assert ops_named(parsed, "func.func"), name


def test_stop_after_layout_leaves_later_passes_undone() -> None:
    module = graph([(1, 64, 32)], _linear_block)  # 64 tokens: W rows of 128 bytes in (B, C, 1, S)
    stopped = clone_module(module)
    stats = run_pipeline(stopped, CompileOptions(emit="descriptors", stop_after="ane-layout"))
    assert list(stats["pass_seconds"]) == list(PIPELINES["descriptors"][: PIPELINES["descriptors"].index("ane-layout") + 1])
    assert ops_named(stopped, "ane.conv")
    (norm,) = ops_named(stopped, "ane.layer_norm")
    assert norm.epsilon.value.data < 1e-11  # the fp16 pass has not raised it yet
    assert stats["padding_bytes_after_layout"] < stats["padding_bytes_before_layout"]
