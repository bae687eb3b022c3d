"""Per-architecture register field tables: where every task-descriptor field lives and how wide it is.

A task descriptor (TD) is a 10-word header plus seven register groups. A field is a bit range of one
32-bit word of one group; its *unit* says what one step of the field is worth (64 bytes for tile-DMA
bases and strides, 16 bytes for L2 addresses, 1 for counts), so the IR and the file hold hardware
values and the unit is never implicit.

The H13 (M1) table is eco (c): fields recovered by bit-probing Apple's `ZinIrRegBitPrintOutDebug<7>`
(tinygrad's `aneregs.json`), written below in the notes' own notation (TD byte offset: bit ranges).
Some of what a complete program needs has no public decoding (the op class of a planar or reduction
task, the second tile-DMA source, a reduction's axes). Those fields are anec's own, marked
`origin="anec"`, and live only in register words no public decoding uses, so no documented field is
ever overloaded. Later generations carry their own layout version; where a generation is known to need
a wider field (65536-wide tensors from A16) its table widens it, everything else is H13's layout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from types import MappingProxyType
from typing import Never

from anec.errors import AnecError

ECO = "eco (c): aneregs.json bit-probing of ZinIrRegBitPrintOutDebug<7>"
ANEC = "anec extension: no public decoding; placed in a register word no documented field uses"


@dataclass(frozen=True)
class Group:
    """One register group: its name in the IR, the eco notes' name, TD data offset, size and address."""

    name: str
    title: str
    data_offset: int      # TD byte offset of the group's first data word (dense H13 layout)
    words: int
    reg_base: int         # register address of the first word; word i is at reg_base + 4*i

    def address(self, word: int) -> int:
        return self.reg_base + 4 * word


HEADER = Group("header", "TD header", 0x00, 10, -1)
"""The fixed header (always serialized whole), not a register group."""

GROUPS: tuple[Group, ...] = (
    Group("kernel_dma", "KernelDMASrc", 0x2C, 62, 0x1F800),
    Group("common", "Common", 0x128, 16, 0x00000),
    Group("tile_src", "TileDMASrc", 0x16C, 28, 0x13800),
    Group("l2", "L2", 0x1E0, 18, 0x04800),
    Group("planar", "PE", 0x22C, 4, 0x08800),
    Group("neural", "NE", 0x240, 5, 0x0C800),
    Group("tile_dst", "TileDMADst", 0x258, 7, 0x17800),
)
"""The seven register groups in TD order (eco (c) group table)."""

GROUP_NAMES: tuple[str, ...] = tuple(g.name for g in GROUPS)
ALL_GROUPS: tuple[Group, ...] = (HEADER, *GROUPS)


@dataclass(frozen=True)
class Field:
    group: str
    name: str
    word: int            # word index within the group
    lo: int              # lowest bit
    width: int
    unit: int = 1        # bytes per step (64: tile DMA, 16: L2), 1 for plain numbers
    signed: bool = False
    encoding: str = "int"  # "int", "fp16" (bits of a half float), "f32" (bits of a float32)
    origin: str = ECO

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lo

    @property
    def min(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    def fits(self, value: int) -> bool:
        return self.min <= value <= self.max

    def insert(self, word: int, value: int) -> int:
        return word | ((value & ((1 << self.width) - 1)) << self.lo)

    def extract(self, word: int) -> int:
        raw = (word >> self.lo) & ((1 << self.width) - 1)
        if self.signed and raw >> (self.width - 1):
            raw -= 1 << self.width
        return raw


@dataclass(frozen=True)
class FieldTable:
    """The TD layout of one architecture: a version tag and every field."""

    arch: str
    version: int          # stored in each .anec file; the decoder refuses a mismatch
    tag: str
    fields: tuple[Field, ...]
    note: str = ""

    @cached_property
    def by_group(self) -> dict[str, dict[str, Field]]:
        out: dict[str, dict[str, Field]] = {g.name: {} for g in ALL_GROUPS}
        for f in self.fields:
            out[f.group][f.name] = f
        return out

    @cached_property
    def by_word(self) -> dict[tuple[str, int], tuple[Field, ...]]:
        out: dict[tuple[str, int], list[Field]] = {}
        for f in self.fields:
            out.setdefault((f.group, f.word), []).append(f)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def word_masks(self) -> dict[tuple[str, int], int]:
        """Bits of each word some field owns; any other bit set in a file is an error."""
        return {k: sum(f.mask for f in fs) for k, fs in self.by_word.items()}

    def field(self, group: str, name: str) -> Field:
        try:
            return self.by_group[group][name]
        except KeyError:
            raise AnecError(f"{name!r} is not a field of the {group} group", where=f"{self.arch} field table") from None

    def check(self, group: str, name: str, value: int) -> None:
        f = self.field(group, name)
        if not f.fits(value):
            raise AnecError(f"{group}.{name} = {value} does not fit its {f.width}-bit{' signed' if f.signed else ''} field",
                            where=f"{self.arch} field table", hint=f"the field holds {f.min}..{f.max}")

    def pack(self, group: str, values: dict[str, int]) -> list[int]:
        """The group's words with `values` inserted (every value checked against its width)."""
        words = [0] * (HEADER.words if group == "header" else GROUP_BY_NAME[group].words)
        for name, value in values.items():
            self.check(group, name, value)
            f = self.by_group[group][name]
            words[f.word] = f.insert(words[f.word], value)
        return words

    def unpack(self, group: str, word_index: int, word: int) -> Mapping[str, int]:
        """The nonzero fields of one word (shared: do not change it); raises when a bit no field owns is set.

        Programs repeat the same words across tasks, so each distinct word is unpacked once."""
        key = (group, word_index, word)
        if (known := self._unpacked.get(key)) is not None:
            return known
        stray = word & ~self.word_masks.get((group, word_index), 0) & 0xFFFFFFFF
        if stray:
            raise AnecError(f"{group} word {word_index} sets bits {stray:#x} that no {self.arch} field owns")
        out = {}
        for f in self.by_word.get((group, word_index), ()):
            if (v := f.extract(word)) != 0:
                out[f.name] = v
        self._unpacked[key] = out
        return out

    @cached_property
    def _unpacked(self) -> dict[tuple[str, int, int], dict[str, int]]:
        return {}


GROUP_BY_NAME: dict[str, Group] = {g.name: g for g in ALL_GROUPS}

# ------------------------------------------------------------------------------------------------
# The H13 table, in eco (c)'s notation: (TD byte offset, "Name[hi:lo] Flag bN ...")
# ------------------------------------------------------------------------------------------------

_BITS = re.compile(r"(\w+)(?:\[(\d+):(\d+)\]|\s+b(\d+))")


def _group_of(offset: int) -> tuple[Group, int, int]:
    """(group, word index, bit shift) of a TD byte offset; a half-word offset shifts by 16 bits."""
    for g in ALL_GROUPS:
        if g.data_offset <= offset < g.data_offset + 4 * g.words:
            rel = offset - g.data_offset
            return g, rel // 4, 8 * (rel % 4)
    raise ValueError(f"TD offset {offset:#x} is in no group")


_NONE: Mapping[str, Never] = MappingProxyType({})  # no field off the default


def _fields(spec: list[tuple[int, str]], origin: str = ECO, *, unit: Mapping[str, int] = _NONE,
            signed: Mapping[str, bool] = _NONE, encoding: Mapping[str, str] = _NONE) -> list[Field]:
    """The fields of `spec`; `unit`, `signed` and `encoding` name the fields off `Field`'s defaults."""
    out = []
    for offset, text in spec:
        group, word, shift = _group_of(offset)
        for m in _BITS.finditer(text):
            name = m.group(1)
            hi, lo = (int(m.group(2)), int(m.group(3))) if m.group(2) else (int(m.group(4)), int(m.group(4)))
            out.append(Field(group.name, name, word, lo + shift, hi - lo + 1, unit=unit.get(name, Field.unit),
                             signed=signed.get(name, Field.signed), encoding=encoding.get(name, Field.encoding),
                             origin=origin))
    return out


def _repeat(base: int, count: int, template: str) -> list[tuple[int, str]]:
    return [(base + 4 * i, template.format(i=i)) for i in range(count)]


_DMA64 = 64
_L2UNIT = 16

_H13_DOCUMENTED: list[tuple[int, str]] = [
    # header
    (0x00, "TID[15:0] NID[23:16] LNID b24 EON b25"),
    (0x04, "ExeCycles[15:0] NextSize[24:16]"),
    (0x08, "LogEvents[23:0]"),
    (0x0C, "Exceptions[23:0]"),
    (0x10, "DebugLogEvents[23:0]"),
    (0x14, "DebugExceptions[23:0]"),
    (0x18, "DisallowAbort b8 TDSkip b9 KPC b10 SPL b11 TSR b12 SPC b13 DPC b14 TSE b15 NextPriority[21:16] "
           "TDE b24 SrcLoc b28 DstLoc b29 TQDis b31"),
    (0x1C, "NextPointer[31:0]"),
    (0x20, "RBase0[4:0] RBE0 b5 RBase1[10:6] RBE1 b11 WBase[16:12] WBE b17 TBase[22:18] TBE b23 ENE[26:24]"),
    (0x24, "KBase0[4:0] KBE0 b5 KBase1[10:6] KBE1 b11 KBase2[16:12] KBE2 b17 KBase3[22:18] KBE3 b23"),
    # kernel DMA: 16 coefficient streams
    *_repeat(0x34, 16, "CoeffEn{i} b0 CoeffCrH{i}[5:4] CoeffCacheHint{i}[9:6] CoeffPrefetch{i} b28"),
    *_repeat(0x74, 16, "CoeffBaseAddr{i}[31:6]"),
    *_repeat(0xB4, 16, "CoeffBfrSize{i}[31:6]"),
    # common
    (0x128, "Win[14:0]"), (0x12A, "Hin[14:0]"), (0x12C, "InputDepth[15:0]"),
    (0x130, "InFmt[1:0] OutFmt[5:4]"),
    (0x134, "Cin[16:0]"), (0x138, "Cout[16:0]"),
    (0x13C, "Wout[14:0]"), (0x13E, "Hout[14:0]"), (0x140, "OutDepth[15:0]"),
    (0x144, "Kw[4:0] Kh[9:5] OCGSize[12:10] Sx[14:13] Sy[16:15] Px[21:17] Py[26:22] Ox[29:28] Oy[31:30]"),
    (0x14C, "NumGroups[12:0] UnicastEn b14 ElemMultMode b15 UnicastCin[31:16]"),
    (0x150, "TileHeight[14:0]"),
    (0x15C, "SmallSourceMode b2 ShPref[10:8] ShMin[14:12] ShMax[18:16] ActiveNE[21:19] CtxSwitchIn b22 "
            "CtxSwitchOut b24 AccDoubleBufEn b26"),
    (0x160, "TaskID[15:0] TaskQ[19:16] TaskNID[27:20]"),
    (0x164, "DPECategory[3:0]"),
    # tile DMA source
    (0x16C, "En b0 CrH[5:4] CacheHint[9:6] CacheHintReuse[13:10] CacheHintNoReuse[17:14] DependencyMode[19:18]"),
    (0x174, "BaseAddr[31:6]"), (0x178, "RowStride[31:6]"), (0x17C, "PlaneStride[31:6]"),
    (0x180, "DepthStride[31:6]"), (0x184, "GroupStride[31:6]"),
    (0x1A4, "FmtMode[1:0] Truncate[5:4] Shift b8 MemFmt[13:12] OffsetCh[18:16] Interleave[27:24] CmpVec[31:28]"),
    *_repeat(0x1BC, 4, "PixelOffset{i}[15:0]"),
    # L2
    (0x1E0, "InputReLU b0 PaddingMode[3:2]"),
    (0x1E4, "SourceType[1:0] Dependent[3:2] AliasConvSrc b4 AliasConvRslt b5 SrcDMAFmt[7:6] SrcDMAInterleave[11:8] "
            "SrcDMACmpVec[15:12] SrcDMAOffsetCh[18:16] AliasPlanarSrc b20 AliasPlanarRslt b22"),
    (0x1E8, "SourceBase[20:4]"), (0x1EC, "SourceChannelStride[20:4]"), (0x1F0, "SourceRowStride[20:4]"),
    (0x210, "ResultType[1:0] L2BfrMode b3 RsltDMAFmt[7:6] RsltDMAInterleave[11:8]"),
    (0x214, "ResultBase[20:4]"), (0x218, "ConvResultChannelStride[20:4]"), (0x21C, "ConvResultRowStride[20:4]"),
    # planar engine
    (0x230, "BiasScalar[15:0]"), (0x232, "ScaleScalar[15:0]"),
    # neural engine
    (0x240, "KernelFmt[1:0] PalettizedEn b2 PalettizedBits[7:4] SparseFmt b8 GroupKernelReuse b10"),
    (0x244, "OpMode[2:0] KernelMode b3 BiasMode b4 MatrixBiasEn b6 BinaryPoint[12:8] PostScaleMode b14 NonlinearMode[17:16]"),
    (0x248, "MatrixVectorBias[15:0]"), (0x24C, "AccBias[15:0] AccBiasShift[20:16]"),
    (0x250, "PostScale[15:0] PostRightShift[20:16]"),
    # tile DMA destination
    (0x258, "En b0 CrH[5:4] CacheHint[9:6] L2BfrMode b26 BypassEOW b27"),
    (0x25C, "BaseAddr[31:6]"), (0x260, "RowStride[31:6]"), (0x264, "PlaneStride[31:6]"),
    (0x268, "DepthStride[31:6]"), (0x26C, "GroupStride[31:6]"),
    (0x270, "FmtMode[1:0] Truncate[5:4] Shift b8 MemFmt[13:12] OffsetCh[18:16] ZeroPadLast b20 ZeroPadFirst b21 "
            "CmpVecFill b22 Interleave[27:24] CmpVec[31:28]"),
]

_H13_EXTENSIONS: list[tuple[int, str]] = [
    # the guide files "task type" under G0 (kernel/common): the op class and its modes
    (0x2C, "Kind[5:0] Mode[11:6] Neuron[16:12] TransposeLhs b17 TransposeRhs b18 CountIncludePad b19 "
           "SelectLast b20 LutEn b21 KernelFromSrc2 b22 DilationX[27:24] DilationY[31:28]"),
    (0x30, "InBatch[16:0]"),
    (0xF4, "OutBatch[16:0]"),
    # element step along W of the source view (0 broadcasts)
    (0x170, "WStep[3:0]"),
    # the second tile-DMA source (the guide lists three tile DMAs: src1, src2, dst)
    (0x188, "Src2En b0 Src2WStep[23:20]"),
    (0x18C, "Src2BaseAddr[31:6]"), (0x190, "Src2RowStride[31:6]"), (0x194, "Src2PlaneStride[31:6]"),
    (0x198, "Src2DepthStride[31:6]"), (0x19C, "Src2GroupStride[31:6]"), (0x1A0, "Src2PixelOffset[15:0]"),
    # where a result starts inside its row (concatenation along W)
    (0x1F4, "ResultPixelOffset[15:0]"),
    # texture sampler scales (the guide groups the texture engine with L2)
    (0x220, "ResampleScaleH[31:0]"), (0x224, "ResampleScaleW[31:0]"),
    # planar engine: axes, permutation and modes of reductions, norms, transposes, pads and resamples
    (0x22C, "AxisMask[4:0] Perm[19:5] PadMode[21:20] CoordMode[24:22] NearestMode[26:25] BlockSize[31:27]"),
    (0x234, "Epsilon[31:0]"),
]

_UNITS = {name: _DMA64 for name in (
    "BaseAddr", "RowStride", "PlaneStride", "DepthStride", "GroupStride",
    "Src2BaseAddr", "Src2RowStride", "Src2PlaneStride", "Src2DepthStride", "Src2GroupStride",
    *(f"CoeffBaseAddr{i}" for i in range(16)), *(f"CoeffBfrSize{i}" for i in range(16)))} | {
    name: _L2UNIT for name in ("SourceBase", "SourceChannelStride", "SourceRowStride", "ResultBase",
                               "ConvResultChannelStride", "ConvResultRowStride")}
_SIGNED = {name: True for name in ("RowStride", "PlaneStride", "DepthStride", "GroupStride",
                                   "Src2RowStride", "Src2PlaneStride", "Src2DepthStride", "Src2GroupStride")}
_ENCODING = {"BiasScalar": "fp16", "ScaleScalar": "fp16", "PostScale": "fp16", "MatrixVectorBias": "fp16", "AccBias": "fp16",
             "Epsilon": "f32", "ResampleScaleH": "f32", "ResampleScaleW": "f32"}


def _h13_fields() -> tuple[Field, ...]:
    return tuple(_fields(_H13_DOCUMENTED, ECO, unit=_UNITS, signed=_SIGNED, encoding=_ENCODING)
                 + _fields(_H13_EXTENSIONS, ANEC, unit=_UNITS, encoding=_ENCODING))


def _moved(fields: tuple[Field, ...], moves: dict[str, tuple[str, int, int, int]], source: str) -> tuple[Field, ...]:
    """`fields` with some common-group fields placed elsewhere: name -> (group, word, lo, width)."""
    out = []
    for f in fields:
        if f.group == "common" and f.name in moves:
            group, word, lo, width = moves[f.name]
            f = replace(f, group=group, word=word, lo=lo, width=width, origin=source)
        out.append(f)
    return tuple(out)


_WIDE_SOURCE = ("predicted: A16+ tensors reach 65536 (guide §3), which needs 17-bit spatial fields; "
                "the H16 layout is not public, so H13's free common words 0x148 and 0x154 take Hin and Hout")
_WIDE_MOVES = {
    "Win": ("common", 0, 0, 17), "Hin": ("common", 8, 0, 17),           # 0x128, 0x148
    "Wout": ("common", 5, 0, 17), "Hout": ("common", 11, 0, 17),        # 0x13C, 0x154
    "InputDepth": ("common", 1, 0, 17), "OutDepth": ("common", 6, 0, 17),
    "TileHeight": ("common", 10, 0, 17),
}

_H13 = FieldTable("h13", 7, "h13/td-v7", _h13_fields(), "eco (c): H13/M1, TD v7")
_H13_LAYOUT_SOURCE = "predicted: no public decoding for this generation; H13's layout under its own version tag"
_WIDE = _moved(_H13.fields, _WIDE_MOVES, _WIDE_SOURCE)

TABLES: dict[str, FieldTable] = {
    "h13": _H13,
    "h13g": replace(_H13, arch="h13g", note="H13 with 8 cores: the same TD layout (eco (c), guide §1)"),
    "h14": FieldTable("h14", 8, "h14/anec-1", _H13.fields, _H13_LAYOUT_SOURCE),
    "h15": FieldTable("h15", 9, "h15/anec-1", _H13.fields, _H13_LAYOUT_SOURCE),
    "h16": FieldTable("h16", 10, "h16/anec-1", _WIDE, _WIDE_SOURCE),
    "h17": FieldTable("h17", 11, "h17/anec-1", _WIDE, _WIDE_SOURCE),
    "h17s": FieldTable("h17s", 11, "h17/anec-1", _WIDE, _WIDE_SOURCE),
}
"""Field table per runtime architecture (`Target.arch`)."""


def table_for(arch: str) -> FieldTable:
    try:
        return TABLES[arch]
    except KeyError:
        raise AnecError(f"no task-descriptor layout for architecture {arch!r}", hint=f"known: {', '.join(sorted(TABLES))}") from None

