"""Compressed kernels in descriptor programs: each chip streams the forms the hardware notes say it
streams (the int4 palette and sparse kernels everywhere, int8 from A14) and expands the rest to fp16; the simulator
decompresses a stream to exactly the fp16 values the IR holds."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp, f32
from xdsl.dialects.func import FuncOp, ReturnOp
from xdsl.ir import Block, Region

import anec
from anec.compression import AffineWeight, PaletteWeight, prune
from anec.descriptors.program import kernel_stream_form
from anec.dialects import ane
from anec.dialects.ane import tensor
from anec.interpreter import interpret
from anec.isa.tasks import Coeff
from anec.legality import KERNEL_MEMORY, kernel_bytes, legality
from anec.sim.functional import Machine
from anec.weights import WeightStore, attach, make_compressed_const

RNG = np.random.default_rng(7)
PALETTE = PaletteWeight(RNG.integers(0, 16, (64, 32, 3, 3)).astype(np.uint8), (np.linspace(-1, 1, 16) * 0.1).astype(np.float16), 4)
SPARSE = prune(RNG.standard_normal((16, 16, 1, 1)).astype(np.float32))
AFFINE = AffineWeight(RNG.integers(0, 256, (16, 64, 1, 1)).astype(np.uint8), RNG.uniform(1e-3, 4e-3, 16).astype(np.float32),
                      RNG.integers(100, 156, 16).astype(np.uint8), axis=0)


def compressed_convs() -> ModuleOp:
    """x → 3×3 conv (4-bit palette) → relu → 1×1 conv (uint8 per channel, with zero points) → 1×1 conv (half pruned)."""
    store = WeightStore()
    block = Block(arg_types=[tensor((1, 32, 8, 8))])
    w1 = make_compressed_const(PALETTE, "conv1.weight", store, f32)
    conv1 = ane.ConvOp(block.args[0], w1.result, pads=[1, 1, 1, 1])
    relu = ane.ReluOp(conv1.result)
    w2 = make_compressed_const(AFFINE, "conv2.weight", store, f32)
    conv2 = ane.ConvOp(relu.result, w2.result)
    w3 = make_compressed_const(SPARSE, "conv3.weight", store, f32)
    conv3 = ane.ConvOp(conv2.result, w3.result)
    block.add_ops([w1, conv1, relu, w2, conv2, w3, conv3, ReturnOp(conv3.result)])
    module = ModuleOp([FuncOp("main", ([block.args[0].type], [conv3.result.type]), Region(block))])
    attach(module, store)
    return module


def _kernel_forms(compiled: anec.CompiledModel) -> list[str | None]:
    (program,) = compiled.program.programs
    return [kernel_stream_form(t) for t in program.tasks if t.coeff_elements(Coeff.KERNEL)]


@pytest.fixture(scope="module")
def compiled() -> dict[str, anec.CompiledModel]:
    return {chip: anec.compile(compressed_convs(), target=chip, emit="ir") for chip in ("m1", "m2", "m4")}


def test_each_chip_streams_the_forms_the_notes_say_it_streams(compiled: dict[str, anec.CompiledModel]) -> None:
    assert _kernel_forms(compiled["m1"]) == ["palette4", None, "sparse"]      # int8 is expanded to fp16 in DRAM on M1
    assert _kernel_forms(compiled["m2"]) == ["palette4", "uint8", "sparse"]   # int8 streams from A14
    assert _kernel_forms(compiled["m4"]) == ["palette4", "uint8", "sparse"]
    sizes = {chip: len(c.program.programs[0].weights) for chip, c in compiled.items()}
    assert sizes["m4"] < sizes["m1"] < 2 * (PALETTE.fp16().size + AFFINE.fp16().size + SPARSE.fp16().size)


def test_the_simulator_decompresses_a_stream_to_the_irs_fp16_values(compiled: dict[str, anec.CompiledModel]) -> None:
    (program,) = compiled["m4"].program.programs
    machine = Machine.for_program(program)
    palette, affine, sparse = [t for t in program.tasks if t.coeff_elements(Coeff.KERNEL)]
    assert machine.coefficients(palette, Coeff.KERNEL).tobytes() == PALETTE.fp16().astype(np.float32).ravel().tobytes()
    assert machine.coefficients(affine, Coeff.KERNEL).tobytes() == AFFINE.fp16().astype(np.float32).ravel().tobytes()
    assert machine.coefficients(sparse, Coeff.KERNEL).tobytes() == SPARSE.fp16().astype(np.float32).ravel().tobytes()


def test_streamed_and_expanded_kernels_compute_the_same_bits(compiled: dict[str, anec.CompiledModel]) -> None:
    x = RNG.standard_normal((1, 32, 8, 8)).astype(np.float32)
    outputs = {chip: next(iter(c.run([x]).values())) for chip, c in compiled.items()}
    assert outputs["m1"].tobytes() == outputs["m2"].tobytes() == outputs["m4"].tobytes()
    np.testing.assert_allclose(outputs["m1"], interpret(compiled["m1"].ir, [x])[0], rtol=2e-2, atol=2e-2)


WIDE = 768
"""Input channels of a 64-output 1×1 conv whose kernel fits the 64 KB kernel memory only compressed:
96 KB in fp16, 48 KB in int8, 24 KB as a 4-bit palette."""


def wide_conv(weight: AffineWeight | PaletteWeight) -> ModuleOp:
    store = WeightStore()
    block = Block(arg_types=[tensor((1, WIDE, 4, 4))])
    w = make_compressed_const(weight, "wide.weight", store, f32)
    conv = ane.ConvOp(block.args[0], w.result)
    block.add_ops([w, conv, ReturnOp(conv.result)])
    module = ModuleOp([FuncOp("main", ([block.args[0].type], [conv.result.type]), Region(block))])
    attach(module, store)
    return module


def test_a_kernel_that_fits_only_compressed_is_not_tiled_where_the_chip_streams_it() -> None:
    palette = PaletteWeight(RNG.integers(0, 16, (64, WIDE, 1, 1)).astype(np.uint8), (np.linspace(-1, 1, 16) * 0.05).astype(np.float16), 4)
    int8 = AffineWeight(RNG.integers(-127, 128, (64, WIDE, 1, 1)).astype(np.int8), np.full(64, 4e-4, np.float32), np.zeros(64, np.int8), axis=0)
    assert 2 * palette.fp16().size > anec.get_target("m1").memory.kernel_memory_bytes.value
    convs = {name: next(op for op in wide_conv(w).walk() if isinstance(op, ane.ConvOp)) for name, w in (("palette4", palette), ("int8", int8))}
    assert kernel_bytes(convs["palette4"], anec.get_target("m1")) == WIDE * 32 + 32
    assert legality(convs["palette4"], anec.get_target("m1"), strict=True).ok
    assert legality(convs["int8"], anec.get_target("m1"), strict=True).rule == KERNEL_MEMORY.name   # expanded to fp16 on M1
    assert legality(convs["int8"], anec.get_target("m4"), strict=True).ok
    tasks = {(name, chip): [kernel_stream_form(t) for t in anec.compile(wide_conv(w), target=chip, emit="ir").program.programs[0].tasks
                            if t.coeff_elements(Coeff.KERNEL)]
             for name, w in (("palette4", palette), ("int8", int8)) for chip in ("m1", "m4")}
    assert tasks["palette4", "m1"] == tasks["palette4", "m4"] == ["palette4"]
    assert tasks["int8", "m4"] == ["int8"]
    assert len(tasks["int8", "m1"]) >= 2 and set(tasks["int8", "m1"]) == {None}
