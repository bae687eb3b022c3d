"""The failure classes of the wild corpus: what each looks like in a campaign record, the stage and
op at fault, and its reproducer in `tests/wild/repros.py`.

`benchmarks/wild.py report` assigns every record that is not ok (or whose Core ML package was
refused) to the first class whose matcher accepts it, so the models affected are computed from the
results, never listed by hand; a record no class accepts is reported as unclassified.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Record = dict[str, Any]


@dataclass(frozen=True)
class FailureClass:
    key: str
    status: str
    stage: str
    summary: str
    repro: str | None
    matches: Callable[[Record], bool]


def _reason(pattern: str, status: str | None = None) -> Callable[[Record], bool]:
    rx = re.compile(pattern)
    return lambda r: (status is None or r.get("status") == status) and bool(rx.search(str(r.get("reason", ""))))


def _domain(used: bool) -> Callable[[Record], bool]:
    def match(r: Record) -> bool:
        m = re.search(r"unknown op domain '([^']+)'", str(r.get("reason", "")))
        if not m or r.get("status") != "refused":
            return False
        return (m.group(1) in r.get("node_domains", ())) == used  # recorded by the evaluation
    return match


def _fp16(kind: str) -> Callable[[Record], bool]:
    """An fp16 miss by what its warnings name first: values past fp16's range, values below its
    smallest subnormal, else rounding."""
    def match(r: Record) -> bool:
        if r.get("status") != "fp16-mismatch":
            return False
        warnings = r.get("fp16_warnings", [])
        found = ("overflow" if any("65504" in w or "32768" in w for w in warnings)
                 else "underflow" if any("underflow" in w for w in warnings) else "rounding")
        return found == kind
    return match


CLASSES: list[FailureClass] = [
    FailureClass("numeric-value-names", "crash", "import (onnx_graph.py name hints)",
                 "ONNX value or input names that are not valid xDSL names (`390`, `serving_default_input_2:0`) "
                 "reach xDSL's name_hint setter, which raises ValueError. Graph inputs are not sanitised at all, "
                 "values keep a leading digit. Fix: sanitise both and prefix a letter.",
                 "numeric_value_names", _reason(r"Invalid (OpResult|BlockArgument) name format", "crash")),
    FailureClass("unused-op-domain", "refused", "import (onnx_load.py)",
                 "The model declares an op-set domain that none of its nodes uses ('Paddle', 'com.microsoft', "
                 "'org.pytorch.aten' …); the loader refuses every unknown declared domain. Fix: check only the "
                 "domains nodes (and functions) use.",
                 "unused_domain", _domain(used=False)),
    FailureClass("contrib-ops", "refused", "import",
                 "Nodes from onnxruntime's contrib domain (com.microsoft DynamicQuantizeLSTM, dynamic int8 "
                 "quantisation). A fair refusal: no ONNX meaning to import.",
                 None, _domain(used=True)),
    FailureClass("value-dependent-if", "refused", "import (If)",
                 "Silero VAD branches on the sample-rate input (`sr == 16000`) with differently shaped branches; "
                 "the If's output shape depends on an input value. Refused without `--freeze sr=16000` "
                 "(`input_values=`), whose hint the error gives; with it the importer folds the If, and the "
                 "corpus freezes such inputs (kind \"const\") as a user would.",
                 "if_on_input", _reason(r"depends on the input values", "refused")),
    FailureClass("host-dequantize-op18", "refused", "host-op runner (onnx reference evaluator)",
                 "Int8 weights dequantised by DequantizeLinear at op set 18 stay host ops; the host runner asks "
                 "onnx's reference evaluator, which implements DequantizeLinear only from op set 19, so the "
                 "interpreter and the simulator refuse a model onnxruntime runs.",
                 "dequantize_opset18", _reason(r"onnx cannot run onnx\.DequantizeLinear", "refused")),
    FailureClass("conv-transpose-untileable", "refused", "ane-tile (ane.conv_transpose)",
                 "A ConvTranspose whose input is over the L2 (the DB head's last upsampling at 640/960): the "
                 "tile pass splits conv_transpose only along batch and output channels, never along H.",
                 "big_conv_transpose", lambda r: r.get("status") == "refused" and bool(
                     re.search(r"^(?!.*#tile).*\(ane\.conv_transpose\) cannot be tiled", str(r.get("reason", ""))))),
    FailureClass("conv-transpose-tile-too-big", "refused", "ane-tile (ane.conv_transpose)",
                 "The tile pass splits a large ConvTranspose along output channels, but its own first piece "
                 "(`#tile0`) is still over the L2 and it refuses that instead of splitting further (along H).",
                 "conv_transpose_tiles_too_big", _reason(r"#tile\d+ \(ane\.conv_transpose\) cannot be tiled", "refused")),
    FailureClass("resize-untileable", "refused", "ane-tile (ane.resize)",
                 "ane.resize has no piece builder in lowering/tile.py, so a 2x nearest upsample whose output is "
                 "over the L2 cannot be split at all (it is elementwise per channel: a channel split is trivial).",
                 "big_upsample", _reason(r"\(ane\.resize\) cannot be tiled", "refused")),
    FailureClass("reshape-untileable", "refused", "ane-tile (ane.reshape made by ane-layout)",
                 "A CTC head onto 18,385 classes (and basic-pitch's 43,844-sample input): the layout pass "
                 "leaves a reshape with the long axis on H. ane-tile cannot split that reshape: on the M1 "
                 "its H extent is over the 16,384 limit, on the M4 its 2.3 MB operand is over the L2.",
                 "wide_ctc_head", _reason(r"\(ane\.reshape\) cannot be tiled", "refused")),
    FailureClass("reflect-pad-limit", "refused", "partition/legality (pad-size) vs ane-tile (chain_pads)",
                 "Silero's STFT reflect Pad of 64-128 samples on the M2+ chips (the M1 keeps reflect pads on "
                 "the CPU): legality's pad-size rule says the tile pass will chain smaller pads, so the pad "
                 "goes to the ANE, but chain_pads declines reflect mode (reflect pads do not compose), and "
                 "ane-tile refuses. Either legality must keep large reflect pads on the CPU, or the tile pass "
                 "must build them from slices and concats.",
                 "big_reflect_pad", _reason(r"\(ane\.pad\) cannot be tiled .*padding \d+ exceeds", "refused")),
    FailureClass("w-step-field", "crash", "to-anehw (DMA view), caught by verification after plan-memory",
                 "A channel Slice folded into its consumer's source view gets a W step of 64; the descriptor's "
                 "`tile_src.WStep` field has 4 bits. to-anehw should materialise the slice (or refuse) instead "
                 "of emitting a descriptor that fails verification.",
                 "stft_magnitude", _reason(r"WStep = \d+ does not fit", "crash")),
    FailureClass("fp16-overflow", "fp16-mismatch", "ane-fp16 (reduce_sum / matmul past 65504)",
                 "Activations beyond fp16's range: sums of squares in hand-written LayerNorms (jax2tf/tf2onnx "
                 "exports) and dense layers reaching 1e5-1e6. anec warns when calibrated on the inputs, but "
                 "compiles anyway and the answer is wrong. Fix idea: rewrite ReduceSum(x²)/n as a mean of "
                 "pre-scaled values, or keep such reductions on the CPU.",
                 "sum_of_squares_layernorm", _fp16("overflow")),
    FailureClass("fp16-underflow", "fp16-mismatch", "ane-fp16 (a constant or value below fp16's smallest subnormal)",
                 "A guard constant fp16 cannot hold: the log of a spectrogram's power written log(x + 1e-10) "
                 "(basic-pitch's normalized_log) loses its 1e-10 to zero, so silent bins give log(0). anec proves "
                 "and names the underflow when calibrated; --precision auto moves the log to the CPU, which "
                 "brings cosine from 0.80 to 0.97, not to the bar: the CQT convolutions before it also underflow.",
                 None, _fp16("underflow")),
    FailureClass("fp16-rounding", "fp16-mismatch", "ane-fp16 (accumulated rounding)",
                 "No tensor leaves fp16's range; rounding accumulated through a deep MobileNetV3 leaves small "
                 "logits (two-class orientation, softmax over 6,625 characters) 1-2% off in relative L2.",
                 None, _fp16("rounding")),
    FailureClass("requantization-floor", "at-input-floor", "fp16 (the model's own sensitivity)",
                 "A model that re-quantizes its activations (DynamicQuantizeLinear before ConvInteger and "
                 "MatMulInteger) rounds to integers at every layer: onnxruntime's own output moves as far when "
                 "only its inputs are rounded to fp16 as when anec runs the whole model in fp16. No fp16 "
                 "compiler can do better; what anec computes is as close as the reference is to itself.",
                 None, lambda r: r.get("status") == "at-input-floor"),
    FailureClass("resize-empty-roi", "Core ML refused", "import (empty-tensor guard) -> emit-coreml",
                 "A Resize whose `roi` input is an empty initializer (paddle2onnx) trips the importer's "
                 "'empty tensors stay on the CPU' guard, so it stays an onnx.Resize host op (the simulator "
                 "runs it on the CPU) and the Core ML emitter refuses the package. Fix: exempt Resize's "
                 "optional roi/scales/sizes inputs from the guard.",
                 "resize_empty_roi", lambda r: "onnx.Resize cannot be expressed" in str(r.get("coreml_reason", ""))),
]
"""Every failure class, most specific first."""


BLOCKERS = frozenset({"numeric-value-names", "unused-op-domain"})
"""Classes `tests.wild.triage.patched_model` works around, so the campaign also records what fails next."""


def failing(record: Record) -> bool:
    return record.get("status") != "ok" or record.get("coreml_saved") is False


def classify_record(record: Record) -> list[str]:
    """Keys of the classes a record shows (the status's class first, then a Core ML refusal's)."""
    keys = [c.key for c in CLASSES if c.status != "Core ML refused" and record.get("status") != "ok" and c.matches(record)][:1]
    keys += [c.key for c in CLASSES if c.status == "Core ML refused" and c.matches(record)]
    return keys


def repro_source() -> Path:
    return Path(__file__).with_name("repros.py")
