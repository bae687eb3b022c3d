"""One frozen record per ANE generation: limits, memories, capabilities, numerics and speed.

Every number is a `Fact` that says where it comes from and how sure we are:
  measured    timed or probed on hardware (the ane-guide's M1/M5 hosts, community benchmarks)
  decompiled  read from Apple's compiler (HAL tables, validators, register field widths)
  spec        Apple's published figure
  predicted   interpolated by us between measured generations; treat as an estimate
Where sources disagree, the disputed value is a field, so code never hard-codes one side; the
`note` of such a fact names the other claim. Sources live in ../shared/reference in the steering
repository: "guide" is sbryngelson/ane-guide (edition v2), "eco" the ecosystem notes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Generic, Literal, TypeVar

from anec.errors import AnecError

T = TypeVar("T")
Kind = Literal["measured", "decompiled", "spec", "predicted"]


@dataclass(frozen=True)
class Fact(Generic[T]):
    value: T
    kind: Kind
    source: str
    note: str = ""


def measured(value: T, source: str, note: str = "") -> Fact[T]:
    return Fact(value, "measured", source, note)


def decompiled(value: T, source: str, note: str = "") -> Fact[T]:
    return Fact(value, "decompiled", source, note)


def spec(value: T, source: str, note: str = "") -> Fact[T]:
    return Fact(value, "spec", source, note)


def predicted(value: T, source: str, note: str = "") -> Fact[T]:
    return Fact(value, "predicted", source, note)


KB, MB, GB = 1024, 1024 * 1024, 1e9


@dataclass(frozen=True)
class Limits:
    """What one task can hold; the tile pass splits work that exceeds any of these."""

    max_rank: Fact[int] = decompiled(5, "guide §3: logical layout [N,D,C,H,W]")
    max_spatial: Fact[int] = decompiled(16384, "guide §3 limits table: W,H,D <= 16384; 16385 rejects")
    max_channels: Fact[int] = decompiled(65536, "guide §3: C <= 65536 (17-bit Cin/Cout field)")
    max_batch: Fact[int] = decompiled(65536, "guide §3: N <= 65536")
    max_kernel_width_fp16: Fact[int] = measured(13, "guide §3: kernel width <= 13 in fp16", note="the frontend validator says 15; 14 and 15 fail at lowering")
    max_kernel_height: Fact[int] = decompiled(29, "guide §3: kernel height <= 29")
    max_stride: Fact[int] = decompiled(2, "guide §3: stride factors {2,3,4,8}, at most 2 per axis")
    max_dilation: Fact[int] = decompiled(8, "guide §3: dilation <= 8 via space-to-batch", note="hollance lists dilated convolution as unsupported")
    max_deconv_stride: Fact[int] = decompiled(2, "guide §3: deconvolution stride {1,2}")
    max_pad: Fact[int] = decompiled(16, "guide §3: pad <= 16, H/W only")
    max_pool_window: Fact[int] = decompiled(29, "guide §3: pool window <= 29 (31 on M2+)", note="another chapter says >= 128 is accepted; hollance says > 13 fails")
    max_pool_stride: Fact[int] = measured(2, "eco (a) hollance: pooling with stride > 2 leaves the ANE")
    max_groups: Fact[int] = decompiled(8191, "eco (c): NumGroups is a 13-bit field")
    max_group_conv_taps: Fact[int] = decompiled(2048, "guide §3: group-conv decompose limit Cin*kW*kH <= 2048")
    max_argmax_axis: Fact[int] = decompiled(2048, "guide §3: argmin/argmax axis <= 2048")
    max_reduce_axes: Fact[int] = decompiled(4, "guide §3: reductions over <= 4 axes")
    max_transpose_extent: Fact[int] = decompiled(16384, "guide §3: transpose extent <= 16384")
    max_upsample_scale: Fact[int] = measured(2, "eco (a) hollance: upsampling by more than 2 leaves the ANE")
    spatial_field_bits: Fact[int] = decompiled(15, "eco (c): Win/Hin are 15-bit TD fields")
    channel_field_bits: Fact[int] = decompiled(17, "eco (c): Cin/Cout are 17-bit TD fields")
    kernel_field_bits: Fact[int] = decompiled(5, "eco (c): Kw/Kh are 5-bit TD fields")
    w_step_field_bits: Fact[int] = decompiled(4, "eco (c): WStep is a 4-bit tile_src field")


@dataclass(frozen=True)
class Memory:
    l2_bytes: Fact[int] = decompiled(2 * MB, "guide §1: 2 MB operand SRAM, HAL 0x1b8")
    l2_cliff_bytes: Fact[int] = measured(int(2.28 * MB), "guide §2: the streaming step is at 2.28-2.34 MB on M1 (tiler margin)")
    kernel_memory_bytes: Fact[int] = decompiled(64 * KB, "guide §1: 64 KB kernel memory, HAL 0x200")
    streamed_kernel_cap_bytes: Fact[int] = decompiled(16 * MB, "guide §1: 16 MB streamed-kernel cap, HAL 0x210")
    row_alignment_bytes: Fact[int] = decompiled(64, "guide §3: rows padded to 64 B; DMA strides in 64-B units")
    l2_unit_bytes: Fact[int] = decompiled(16, "guide §3: L2 bases and strides in 16-B units")
    buffer_page_bytes: Fact[int] = decompiled(16 * KB, "guide §3: buffers map at 16 KB pages")
    sram_banks: Fact[int] = decompiled(64, "guide §1: 64 banks x 16 B")
    weights_per_core: Fact[bool] = decompiled(True, "guide §3: on M1 weights are replicated per core; from A14 kernel memory is shared")


@dataclass(frozen=True)
class Numerics:
    """How the hardware computes in fp16 (the simulator follows these)."""

    fp16_max: Fact[float] = spec(65504.0, "IEEE 754 binary16")
    mac_saturation: Fact[float] = measured(32768.0, "guide §2: the MAC output port saturates at 2^15 (32752 passes, 32768 -> inf)")
    width_slice_overflow: Fact[float | None] = measured(4094.0, "guide §2: a width slice with nonzero begin goes through a Q.4 crop DMA; > 4094 -> inf on M1/M2",
                                                         note="chapters disagree on which generation removes it")
    mac_flushes_denormals: Fact[bool] = measured(True, "guide §2: denormals flushed inside the MAC on M1 (kept on M5)")
    rounding: Fact[str] = measured("half-even", "guide §2: round-half-to-even on M1 (one M5 case differs)")
    nan_to_inf: Fact[bool] = measured(True, "guide §2: NaN coerced to +inf at input; no NaN is produced")
    log_of_zero: Fact[float] = measured(-45440.0, "guide §2: log(0) = -45440")
    indeterminate_result: Fact[float] = measured(0.0, "guide §2: inf-inf, 0*inf, sqrt(-1) and log(-1) all return +0; no NaN is produced")
    lut_segments: Fact[int] = measured(32, "guide §2: activations are a 33-knot / 32-segment PWL LUT")
    accumulator_group: Fact[int] = measured(4, "guide §2: the first stage reduces in fp16-rounded groups of 4 lanes")


@dataclass(frozen=True)
class Performance:
    """Inputs of the timing model (anec.sim.timing). `FIT_PARAMETERS` are fitted per measured
    generation; `peak_fp16_flops` and `dram_bytes_per_s` stay the published roofs (utilization)."""

    cores: Fact[int]
    clock_hz: Fact[float]
    peak_fp16_flops: Fact[float]
    sustained_fp16_flops: Fact[float]
    dram_bytes_per_s: Fact[float]
    weight_stream_bytes_per_s: Fact[float]
    activation_bytes_per_s: Fact[float]
    dispatch_floor_s: Fact[float]
    task_overhead_s: Fact[float]
    ne_flops_per_s: Fact[float]
    narrow_kernel_exponent: Fact[float]
    planar_bytes_per_s: Fact[float]
    output_channels_per_cycle: Fact[int] = decompiled(4, "guide §2: lane width is 4 output channels/cycle/core in fp16")
    accumulator_slots: Fact[int] = decompiled(8, "guide §2: 8-entry accumulator file, HAL 0x0c")
    layer_overhead_cycles: Fact[int] = measured(44, "guide §2: fixed per-layer overhead of 44 cycles")
    chained_op_s: Fact[float] = measured(6e-6, "guide §2: 32 fused conv+ReLU layers cost ~0.19 ms, ~6 us per op")
    energy_j_per_flop: Fact[float] = measured(0.5e-12, "guide §1: 0.5 pJ/FLOP sustained")
    cliff_slowdown: Fact[float] = measured(2.5, "guide §2: a matmul chain whose activation passes the 2 MB cliff fell from 12 to 4.8 TFLOP/s")
    host_flops_per_s: Fact[float] = decompiled(20e9, "guide §6: Core ML's segmenter anchors the CPU at 20 GFLOP/s")
    host_bytes_per_s: Fact[float] = decompiled(10e9, "guide §6: Core ML's segmenter anchors the CPU at 10 GB/s")
    palette_decode_speedup: Fact[float] = measured(
        2.37, "guide §4: int4 LUT weights stream 2.37x faster than fp16 on M1 (weight-bound)",
        note="the fp16 weight bytes the kernel DMA's palette-LUT coefficient stream expands per second, as a multiple "
             "of the weight stream: a 4-bit palette moves 4x fewer bytes, but the decode caps the gain at 2.37x")
    sparse_decode_speedup: Fact[float] = measured(
        1.6, "guide §4: sparse weights stream 1.55-1.64x faster than fp16 on M1 (the middle of the range)",
        note="the fp16 weight bytes the kernel DMA expands from a mask and its nonzeros per second, as a multiple of the "
             "weight stream: half the weights pruned moves 1.78x fewer bytes, but the gain measured is 1.55-1.64x")

    def with_fitted(self, facts: Mapping[str, Fact[float]]) -> Performance:
        """These figures with fitted values of some `FIT_PARAMETERS` (all `Fact[float]`) in place."""
        unknown = sorted(set(facts) - set(FIT_PARAMETERS))
        if unknown:
            raise ValueError(f"not fitted parameters of the timing model: {', '.join(unknown)}")
        return replace(self, **facts)  # type: ignore[arg-type]  # mypy checks each value against every field, even the Fact[int] ones no FIT_PARAMETER names


Capability = Literal[
    "texture_engine",       # resize as a sampler, reflect/edge pad, hardware gather
    "topk_sort",            # top-k, sort, dynamic slice
    "sin_cos",
    "global_argmax",
    "wide_dims",            # 65536-wide spatial dimensions
    "int8_weight_stream",
    "palette4_weight_stream",
    "sparse_weight_stream",
    "shared_kernel_memory",
]

CAPABILITY_SOURCES: dict[str, str] = {
    "texture_engine": "guide §4: from A14, the texture engine (resize, crop-resize, gather, reflect/symmetric pad)",
    "topk_sort": "guide §4: from A14, top-k, sort, dynamic-slice (pass the M1 validator, fail M1 codegen)",
    "sin_cos": "guide §4: from A15, sin/cos",
    "global_argmax": "guide §4: from A15, global argmin/argmax",
    "wide_dims": "guide §4: from A16, 65536-wide dimensions",
    "int8_weight_stream": "guide §4: int8 weights stream from A14 (0.52x latency at 8k^2); expanded to fp16 in DRAM on M1",
    "palette4_weight_stream": "guide §4: int4 LUT weights (16-entry fp16 codebook, low nibble first) stream on M1 (2.37x faster)",
    "sparse_weight_stream": "guide §4: sparse weights (1-bit mask LSB first, packed fp16 nonzeros) stream on M1 (1.55-1.64x faster)",
    "shared_kernel_memory": "guide §3: from A14 kernels go to shared kernel memory",
}

# Apple's compiler family per generation (guide §1: M(n) uses H(n+12); family enum A13 = M1).
_CAPABILITIES_FROM_FAMILY: dict[str, int] = {
    "palette4_weight_stream": 13, "sparse_weight_stream": 13, "texture_engine": 14, "topk_sort": 14, "int8_weight_stream": 14, "shared_kernel_memory": 14,
    "sin_cos": 15, "global_argmax": 15, "wide_dims": 16,
}


@dataclass(frozen=True)
class Target:
    name: str                      # marketing name, "M1"
    arch: str                      # runtime architecture, "h13"
    aliases: tuple[str, ...]       # accepted spellings, "m1", "m1-max"
    soc: str
    family: Fact[str]              # Apple compiler family, "A13"
    generation: int                # 13 for H13 … 17 for H17
    codegen_revision: Fact[int]    # hwx cpusubtype: M1 4 … M5 9
    perf: Performance
    limits: Limits = field(default_factory=Limits)
    memory: Memory = field(default_factory=Memory)
    numerics: Numerics = field(default_factory=Numerics)

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(c for c, first in _CAPABILITIES_FROM_FAMILY.items() if self.generation >= first)

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def __str__(self) -> str:
        return f"{self.name} ({self.arch})"


def facts(record: object, prefix: str = "") -> list[tuple[str, Fact]]:
    """Every fact of a record and its sub-records, as (dotted name, fact), for tables and docs."""
    out: list[tuple[str, Fact]] = []
    assert is_dataclass(record), f"{type(record).__name__} is not a record of facts"
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, Fact):
            out.append((prefix + f.name, value))
        elif hasattr(value, "__dataclass_fields__"):
            out.extend(facts(value, f"{prefix}{f.name}."))
    return out


# ------------------------------------------------------------------------------------------------
# The seven chips
# ------------------------------------------------------------------------------------------------

_M1_PUBLISHED = Performance(
    cores=decompiled(4, "guide §1: H13 has 4 architectural cores (HAL num_nes)", note="Apple markets 16; eiln reads 8 from the patents"),
    clock_hz=measured(1.14e9, "guide §1: ~1.14 GHz (DVFS 0.40-1.43)"),
    peak_fp16_flops=measured(12e12, "guide §1: 12 TFLOP/s slope", note="above the guide's own theoretical 5.5 (11 TOPS int8 marketed)"),
    sustained_fp16_flops=measured(3.25e12, "guide §6: cost-model fit P = 3.25 TFLOP/s over 5 reference convs"),
    dram_bytes_per_s=measured(85e9, "guide §1: 85 GB/s DRAM roof", note="Apple's LPDDR4X spec is 68 GB/s"),
    weight_stream_bytes_per_s=measured(51e9, "guide §1: 51 GB/s weight stream"),
    activation_bytes_per_s=measured(24e9, "guide §1: 24 GB/s standalone activation path"),
    dispatch_floor_s=measured(0.21e-3, "guide §2: t0 = 0.19-0.23 ms on M1"),
    task_overhead_s=decompiled(44 / 1.14e9, "guide §2: fixed per-layer overhead of 44 cycles at 1.14 GHz"),
    ne_flops_per_s=measured(12e12, "guide §1: 12 TFLOP/s slope"),
    narrow_kernel_exponent=decompiled(1.0, "guide §2: 4 output channels/cycle/core; a 3x3 kernel fills one (OCG 1)"),
    planar_bytes_per_s=measured(24e9, "guide §1: 24 GB/s standalone activation path (elementwise, norm, softmax)"),
)

_M5_MAX_PUBLISHED = Performance(
    cores=measured(16, "guide §1: H17s has 16 cores (measured host)"),
    clock_hz=measured(1.89e9, "guide §1: ~1.89 GHz (DVFS 0.74-2.36)"),
    peak_fp16_flops=measured(19.6e12, "guide §1: 19.6 TFLOP/s slope", note="community peak 19.3 (eco (d))"),
    sustained_fp16_flops=measured(8.9e12, "guide §1: 8.9 TFLOP/s fit"),
    dram_bytes_per_s=measured(145e9, "guide §1: ~145 GB/s weight stream (no separate DRAM roof given)"),
    weight_stream_bytes_per_s=measured(145e9, "guide §1: ~145 GB/s weight stream"),
    activation_bytes_per_s=measured(57e9, "guide §1: 57 GB/s fit"),
    dispatch_floor_s=measured(0.11e-3, "guide §1: dispatch floor 0.11 ms on M5"),
    task_overhead_s=decompiled(44 / 1.89e9, "guide §2: fixed per-layer overhead of 44 cycles at 1.89 GHz"),
    ne_flops_per_s=measured(19.6e12, "guide §1: 19.6 TFLOP/s slope"),
    narrow_kernel_exponent=decompiled(1.0, "guide §2: 4 output channels/cycle/core; a 3x3 kernel fills one (OCG 1)"),
    planar_bytes_per_s=measured(57e9, "guide §1: 57 GB/s activation fit"),
    palette_decode_speedup=predicted(2.37, "carried over from M1 (guide §4 gives the palette's streaming gain on M1 only)"),
    sparse_decode_speedup=predicted(1.6, "carried over from M1 (guide §4 gives the sparse streaming gain on M1 only)"),
)

PUBLISHED: dict[str, Performance] = {"h13": _M1_PUBLISHED, "h17s": _M5_MAX_PUBLISHED}
"""The published figures of the generations with measurements: the fitter's starting point and
prior (`anec.calibration.fit`)."""

FIT_PARAMETERS: tuple[str, ...] = ("dispatch_floor_s", "task_overhead_s", "ne_flops_per_s", "narrow_kernel_exponent",
                                   "planar_bytes_per_s", "weight_stream_bytes_per_s", "activation_bytes_per_s", "cliff_slowdown")
"""The timing model's free parameters, fitted per generation where the measurements constrain them."""

FITTED: dict[str, dict[str, float]] = {
    # benchmarks/timing_calibration.py --fit prints this table; paste it here.
    "h13": {"dispatch_floor_s": 0.0002461, "task_overhead_s": 3.865e-08, "ne_flops_per_s": 1.286e+13, "narrow_kernel_exponent": 0.9569, "planar_bytes_per_s": 2.402e+10, "activation_bytes_per_s": 2.653e+10, "weight_stream_bytes_per_s": 5.134e+10, "cliff_slowdown": 2.541},
    "h17s": {"dispatch_floor_s": 7.47e-05, "task_overhead_s": 2.261e-08, "ne_flops_per_s": 8.632e+13, "narrow_kernel_exponent": 0.7503, "planar_bytes_per_s": 1.487e+10, "activation_bytes_per_s": 2.384e+10, "weight_stream_bytes_per_s": 1.531e+11},
}
"""Fitted parameter values per measured generation (architecture -> parameter -> value); a parameter
no measurement of that generation constrains keeps its published figure."""

FIT_SOURCES: dict[str, str] = {
    "h13": "the M1 measurements of ane-hardware.md (anec.calibration)",
    "h17s": "ANEForge's 27 M5 Pro single-op latencies (anec/sim/data/m5pro-single-op-latency.json) and the guide's 19.6 TFLOP/s slope",
}


def _fitted(published: Performance, arch: str) -> Performance:
    """A measured generation's performance: the published figures with the fitted parameters."""
    why = f"fitted to {FIT_SOURCES[arch]} by benchmarks/timing_calibration.py --fit"
    perf = published.with_fitted({name: measured(value, why, note=f"published: {getattr(published, name).value:.4g} "
                                                               f"({getattr(published, name).source})")
                                  for name, value in FITTED[arch].items()})
    stream = max(perf.weight_stream_bytes_per_s.value, perf.activation_bytes_per_s.value)
    if stream > perf.dram_bytes_per_s.value:  # a roof below a stream the chip sustains is no roof
        perf = replace(perf, dram_bytes_per_s=measured(stream, f"the fitted weight stream ({why})",
                                                       note=f"published: {perf.dram_bytes_per_s.value:.4g} ({perf.dram_bytes_per_s.source})"))
    return perf


_M1_PERF = _fitted(_M1_PUBLISHED, "h13")
_M5_MAX_PERF = _fitted(_M5_MAX_PUBLISHED, "h17s")

_DVFS_SOURCE = "ANEForge chip-dvfs-tables.json (anec/sim/data): cores_0x238 and the top effective clock of eff_map_0x7a8"
DVFS: dict[str, tuple[int, float]] = {
    "h13": (4, 1.428e9), "h13g": (8, 1.464e9), "h14": (4, 1.452e9), "h15": (4, 1.524e9),
    "h16": (4, 1.620e9), "h17": (4, 1.644e9), "h17s": (16, 1.788e9),
}
"""Per generation, from the firmware's DVFS tables: (cores, top effective clock in Hz)."""


def _scaled(base: Performance, base_arch: str, arch: str, *, peak: Fact[float], dram: Fact[float]) -> Performance:
    """A generation without its own measurements: the nearest measured generation's fitted model,
    its NE rate scaled by cores x top clock from the DVFS tables (the model's NE rate is that of all
    cores busy; few output channels leave cores idle, which is why M5 Pro's measured slope is only
    1.6x M5's with 4x the cores, and why M4's measured 18.6 TFLOP/s agrees with this scaling of the
    M5 Pro fit), its per-task overhead by clock, its bandwidths by DRAM bandwidth; dispatch floor,
    kernel exponent and cliff factor carried over."""
    (cores, clock), (base_cores, base_clock) = DVFS[arch], DVFS[base_arch]
    ratio = cores * clock / (base_cores * base_clock)
    why = f"{base_arch} fit scaled by cores x top DVFS clock ({cores} x {clock / 1e9:.3f} GHz: {ratio:.2f}x)"
    share = dram.value / base.dram_bytes_per_s.value
    bandwidth = f"{base_arch} fit scaled by DRAM bandwidth ({share:.2f}x)"
    carried = f"carried over from the {base_arch} fit (no measurement of this generation)"
    return replace(
        base,
        cores=decompiled(cores, f"guide §1: suffix sets num_nes ({cores}); {_DVFS_SOURCE}"),
        clock_hz=decompiled(clock, _DVFS_SOURCE),
        peak_fp16_flops=peak,
        sustained_fp16_flops=predicted(base.sustained_fp16_flops.value * ratio, why),
        ne_flops_per_s=predicted(base.ne_flops_per_s.value * ratio, why),
        task_overhead_s=predicted(base.task_overhead_s.value * base_clock / clock, f"{base_arch} fit scaled by clock"),
        dram_bytes_per_s=dram,
        weight_stream_bytes_per_s=predicted(base.weight_stream_bytes_per_s.value * share, bandwidth),
        activation_bytes_per_s=predicted(base.activation_bytes_per_s.value * share, bandwidth),
        planar_bytes_per_s=predicted(base.planar_bytes_per_s.value * clock / base_clock, f"{base_arch} fit scaled by clock"),
        dispatch_floor_s=predicted(base.dispatch_floor_s.value, carried),
        narrow_kernel_exponent=predicted(base.narrow_kernel_exponent.value, carried),
        cliff_slowdown=predicted(base.cliff_slowdown.value, carried),
        palette_decode_speedup=predicted(base.palette_decode_speedup.value, carried),
        sparse_decode_speedup=predicted(base.sparse_decode_speedup.value, carried),
    )


_WIDE = replace(Limits(), max_spatial=decompiled(65536, "guide §3: A16+ dimensions up to 65536"))
_M2_LIMITS = replace(Limits(), max_pool_window=decompiled(31, "guide §3: pool window <= 31 on M2+"))
_SHARED_KERNELS = replace(Memory(), weights_per_core=decompiled(False, "guide §3: from A14 kernels go to shared kernel memory"))
_NO_SLICE_Q4 = replace(Numerics(), width_slice_overflow=predicted(None, "guide §2: the Q.4 width-slice overflow is reported on M1/M2 only"))
_M5_NUMERICS = replace(_NO_SLICE_Q4, mac_flushes_denormals=measured(False, "guide §2: denormals kept inside the MAC on M5"))
_M5_MEMORY = replace(_SHARED_KERNELS, l2_cliff_bytes=measured(int(4.72 * MB), "guide §1: 4.72 MB measured threshold on M5"))

_SPEC_DRAM = "Apple memory-bandwidth spec for the SoC"

TARGETS: tuple[Target, ...] = (
    Target("M1", "h13", ("m1",), "T8103", decompiled("A13", "guide §1 family enum", note="outside sources pair M1 with A14"), 13,
           decompiled(4, "guide §5: hwx cpusubtype M1 = 4"), _M1_PERF),
    Target("M1 Pro/Max", "h13g", ("m1-pro", "m1-max", "m1-ultra"), "T600x", decompiled("A13", "guide §1 family enum"), 13,
           decompiled(4, "guide §5: hwx cpusubtype M1 = 4"),
           _scaled(_M1_PERF, "h13", "h13g", peak=predicted(24e12, "guide §1: h13g doubles the cores at M1's clock"), dram=spec(200e9, _SPEC_DRAM))),
    Target("M2", "h14", ("m2",), "T8112", decompiled("A14", "guide §1: M(n) -> family A(n+12)"), 14,
           predicted(5, "between M1 = 4 and M5 = 9"),
           _scaled(_M1_PERF, "h13", "h14", peak=predicted(15.8e12, "guide §1: M2 numerically identical to M1; 15.8 TOPS marketed"), dram=spec(100e9, _SPEC_DRAM)),
           limits=_M2_LIMITS, memory=_SHARED_KERNELS),
    Target("M3", "h15", ("m3",), "T8122", decompiled("A15", "guide §1: M(n) -> family A(n+12)"), 15,
           predicted(6, "between M1 = 4 and M5 = 9"),
           _scaled(_M1_PERF, "h13", "h15", peak=predicted(18e12, "eco (d): community peak ~10 TFLOP/s (M3 Pro); 18 TOPS marketed"), dram=spec(100e9, _SPEC_DRAM)),
           limits=_M2_LIMITS, memory=_SHARED_KERNELS, numerics=_NO_SLICE_Q4),
    Target("M4", "h16", ("m4",), "T8132", decompiled("A16", "guide §1: M(n) -> family A(n+12)"), 16,
           predicted(7, "between M1 = 4 and M5 = 9"),
           _scaled(_M5_MAX_PERF, "h17s", "h16", peak=measured(18.6e12, "eco (d) maderix: 128 stacked 512-channel convs on M4"), dram=spec(120e9, _SPEC_DRAM)),
           limits=replace(_WIDE, max_pool_window=_M2_LIMITS.max_pool_window), memory=_SHARED_KERNELS, numerics=_NO_SLICE_Q4),
    Target("M5", "h17", ("m5",), "T8142", decompiled("A17", "guide §1: M(n) -> family A(n+12)"), 17,
           decompiled(9, "guide §5: hwx cpusubtype M5 = 9"),
           _scaled(_M5_MAX_PERF, "h17s", "h17", peak=measured(12.2e12, "eco (d): community peak 12.2 TFLOP/s on M5"), dram=spec(153e9, "Apple memory-bandwidth spec for M5")),
           limits=replace(_WIDE, max_pool_window=_M2_LIMITS.max_pool_window), memory=_M5_MEMORY, numerics=_M5_NUMERICS),
    Target("M5 Pro/Max", "h17s", ("m5-pro", "m5-max"), "T605x", decompiled("A17", "guide §1: M(n) -> family A(n+12)"), 17,
           decompiled(9, "guide §5: hwx cpusubtype M5 = 9"), _M5_MAX_PERF,
           limits=replace(_WIDE, max_pool_window=_M2_LIMITS.max_pool_window), memory=_M5_MEMORY, numerics=_M5_NUMERICS),
)

def _spelling(name: str) -> str:
    return name.strip().lower().replace(" ", "-").replace("_", "-")


_BY_NAME: dict[str, Target] = {_spelling(key): t for t in TARGETS for key in (t.arch, *t.aliases)}
_BY_DISPLAY_NAME: dict[str, Target] = {_spelling(t.name): t for t in TARGETS}
"""Display names as reports print them ("M1 Pro/Max"), accepted but not listed in hints."""


def target_names() -> list[str]:
    return sorted(_BY_NAME)


def get_target(name: str | Target) -> Target:
    """Look a chip up by chip name (`m1`, `m5-max`), architecture (`h13`) or display name
    (`M1 Pro/Max`, as reports print it); case-insensitive."""
    if isinstance(name, Target):
        return name
    target = _BY_NAME.get(_spelling(name)) or _BY_DISPLAY_NAME.get(_spelling(name))
    if target is not None:
        return target
    raise AnecError(f"unknown target {name!r}", hint=f"use one of {', '.join(target_names())}")


def resolve_targets(name: str) -> list[Target]:
    """`all` gives every chip once; any other name gives that one chip."""
    return list(TARGETS) if name.strip().lower() == "all" else [get_target(name)]
