"""ONNX's recurrent ops (LSTM, GRU, RNN) unrolled over a static sequence into `ane` ops.

The ANE has no recurrent op, but with a static sequence length a recurrence is a fixed chain of
matmuls and elementwise ops: the input projection of every step is one matmul (weights and both
biases folded into it), then each step multiplies the previous hidden state by the recurrence
weights, adds, splits the gates and applies the activations. Forward, reverse and bidirectional
runs, initial states, peepholes, `clip`, `input_forget`, `linear_before_reset`, every activation
ONNX names, both layouts and all outputs are mapped; run-time weights and padded batches
(`sequence_lens` below the sequence length) stay on the CPU with the reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np
from xdsl.ir import SSAValue

from anec.dialects import ane
from anec.dialects.ane import shape_of
from anec.importers.onnx_graph import GraphBuilder, Node, NotOnAne, Value
from anec.importers.onnx_handlers import handles

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
"""Gates per direction: LSTM (i, o, f, c), GRU (z, r, h), RNN (one)."""

DEFAULT_ACTIVATIONS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"), "RNN": ("Tanh",)}

UNROLL_LIMIT = 2048
"""Most steps (sequence length x directions) unrolled; longer sequences would make the IR huge."""

Activation = Callable[[GraphBuilder, SSAValue], SSAValue]
Family = Callable[[GraphBuilder, SSAValue, float, float], SSAValue]


def _softsign(b: GraphBuilder, x: SSAValue, alpha: float, beta: float) -> SSAValue:
    return b.add(ane.DivOp(x, b.add(ane.AddOp(b.add(ane.AbsOp(x)), b.scalar(1.0, x)))))


def _affine(b: GraphBuilder, x: SSAValue, alpha: float, beta: float) -> SSAValue:
    return b.add(ane.AddOp(b.add(ane.MulOp(x, b.scalar(alpha, x))), b.scalar(beta, x)))


def _scaled_tanh(b: GraphBuilder, x: SSAValue, alpha: float, beta: float) -> SSAValue:
    y = b.add(ane.TanhOp(b.add(ane.MulOp(x, b.scalar(beta, x)))))
    return b.add(ane.MulOp(y, b.scalar(alpha, y)))


def _thresholded_relu(b: GraphBuilder, x: SSAValue, alpha: float, beta: float) -> SSAValue:
    return b.add(ane.SelectOp(b.add(ane.GreaterOp(x, b.scalar(alpha, x))), x, b.scalar(0.0, x)))


ACTIVATIONS: dict[str, tuple[Family, str]] = {
    "Sigmoid": (lambda b, x, a, c: b.add(ane.SigmoidOp(x)), ""),
    "Tanh": (lambda b, x, a, c: b.add(ane.TanhOp(x)), ""),
    "Relu": (lambda b, x, a, c: b.add(ane.ReluOp(x)), ""),
    "Softplus": (lambda b, x, a, c: b.add(ane.SoftplusOp(x)), ""),
    "Softsign": (_softsign, ""),
    "LeakyRelu": (lambda b, x, a, c: b.add(ane.LeakyReluOp(x, alpha=a)), "a"),
    "Elu": (lambda b, x, a, c: b.add(ane.EluOp(x, alpha=a)), "a"),
    "HardSigmoid": (lambda b, x, a, c: b.add(ane.HardsigmoidOp(x, alpha=a, beta=c)), "ab"),
    "ThresholdedRelu": (_thresholded_relu, "a"),
    "Affine": (_affine, "ab"),
    "ScaledTanh": (_scaled_tanh, "ab"),
}
"""The activations ONNX names (case-insensitively) for recurrent ops, with the parameters each takes
from `activation_alpha` ("a") and `activation_beta` ("b")."""


@dataclass
class Step:
    """One direction's step helpers: a zero state is None, so the first step of a run without an
    initial state skips its recurrence matmul and the products with the state."""

    b: GraphBuilder
    hidden: int
    clip: float | None
    acts: list[Activation]
    _recurrences: dict[tuple, SSAValue] = field(default_factory=dict)
    """The first step's recurrence constant of each weight matrix (by its memory)."""

    def act(self, k: int, x: SSAValue) -> SSAValue:
        if self.clip is not None:
            x = self.b.add(ane.ClampOp(x, min=-self.clip, max=self.clip))
        return self.acts[k](self.b, x)

    def project(self, h: SSAValue | None, r: np.ndarray, bias: np.ndarray | None = None) -> SSAValue | None:
        """h @ r.T (+ bias); None when h is the zero state and there is no bias."""
        if h is None:
            return None if bias is None or not bias.any() else self.b.constant(bias.reshape(1, -1), name="recurrent_bias")
        return self.b.add(ane.MatmulOp(h, self.recurrence(r), None if bias is None else self.b.constant(bias, name="recurrent_bias")))

    def recurrence(self, r: np.ndarray) -> SSAValue:
        """r.T as a constant of this step: a copy of the first step's `ane.const`, so a weight matrix
        is transposed and hashed into the store once, not at every step."""
        key = (r.__array_interface__["data"][0], r.shape, r.strides)
        first = self._recurrences.get(key)
        if first is None:
            first = self._recurrences[key] = self.b.constant(np.ascontiguousarray(r.T), name="recurrence")
            return first
        assert isinstance(first.owner, ane.ConstOp)
        copy = first.owner.clone()
        self.b.block.add_op(copy)
        return copy.results[0]

    @overload
    def add(self, first: SSAValue, /, *rest: SSAValue | None) -> SSAValue: ...
    @overload
    def add(self, *vals: SSAValue | None) -> SSAValue | None: ...
    def add(self, *vals: SSAValue | None) -> SSAValue | None:
        """The sum of the values present; None when none is."""
        present = [v for v in vals if v is not None]
        if not present:
            return None
        y = present[0]
        for v in present[1:]:
            y = self.b.add(ane.AddOp(y, v))
        return y

    def mul(self, a: SSAValue, c: SSAValue | None) -> SSAValue | None:
        return None if c is None else self.b.add(ane.MulOp(a, c))

    def split(self, x: SSAValue, parts: int) -> list[SSAValue]:
        return [x] if parts == 1 else list(self.b.insert(ane.SplitOp(x, 1, [self.hidden] * parts)).results)


def _required(node: Node, b: GraphBuilder, i: int, what: str, dtype: np.dtype) -> np.ndarray:
    return b.require_const(node.input(i), what).astype(dtype)


def _state(node: Node, b: GraphBuilder, i: int, d: int, layout: int, batch: int, hidden: int) -> SSAValue | None:
    """Direction d's initial state from input i ([dirs, batch, H], or [batch, dirs, H] in layout 1); None for zeros."""
    name = node.input(i)
    if not name:
        return None
    c = b.const(name)
    if c is not None:
        piece = c[d] if layout == 0 else c[:, d]
        return None if not piece.any() else b.constant(np.ascontiguousarray(piece).reshape(batch, hidden), name=f"{node.name}.state")
    v = b.value(name)
    shape = shape_of(v)
    lo, hi = [0, 0, 0], list(shape)
    axis = 0 if layout == 0 else 1
    lo[axis], hi[axis] = d, d + 1
    return b.reshape(b.add(ane.SliceOp(v, lo, hi)), (batch, hidden))


def _check_lengths(node: Node, b: GraphBuilder, seq: int) -> None:
    if not node.input(4):
        return
    lengths = b.const(node.input(4))
    if lengths is None:
        raise NotOnAne("its sequence lengths are given at run time")
    if np.any(lengths != seq):
        raise NotOnAne("sequences shorter than the input (padded batches) need per-entry masking")


def _activations(node: Node, kind: str, dirs: int) -> list[list[Activation]]:
    """Each direction's activations. `activation_alpha`/`activation_beta` are consumed in order by the
    activations that take them (as onnxruntime does); one left without its value stays on the CPU."""
    per = len(DEFAULT_ACTIVATIONS[kind])
    names = list(node.attr("activations") or DEFAULT_ACTIVATIONS[kind] * dirs)
    if len(names) != per * dirs:
        raise NotOnAne(f"{len(names)} activations for {dirs} direction(s)")
    canonical = {k.lower(): k for k in ACTIVATIONS}
    alphas, betas = iter(node.attr("activation_alpha") or []), iter(node.attr("activation_beta") or [])
    acts: list[Activation] = []
    for n in names:
        if n.lower() not in canonical:
            raise NotOnAne(f"the {n} activation")
        fn, params = ACTIVATIONS[canonical[n.lower()]]
        alpha = next(alphas, None) if "a" in params else 0.0
        beta = next(betas, None) if "b" in params else 0.0
        if alpha is None or beta is None:
            raise NotOnAne(f"the {n} activation without its activation_alpha/activation_beta value")
        acts.append(functools.partial(_bound, fn, float(alpha), float(beta)))
    return [acts[d * per:(d + 1) * per] for d in range(dirs)]


def _bound(fn: Family, alpha: float, beta: float, b: GraphBuilder, x: SSAValue) -> SSAValue:
    return fn(b, x, alpha, beta)


UNROLLED_OPS = (ane.MatmulOp, ane.SliceOp, ane.SplitOp, ane.AddOp, ane.SubOp, ane.MulOp, ane.SigmoidOp, ane.TanhOp, ane.ConcatOp,
                ane.ReshapeOp, ane.ClampOp, ane.ReluOp, ane.SoftplusOp, ane.AbsOp, ane.DivOp, ane.LeakyReluOp, ane.EluOp,
                ane.HardsigmoidOp, ane.GreaterOp, ane.SelectOp)
"""What an unrolled recurrence is made of."""


@handles("LSTM", "GRU", "RNN", emits=UNROLLED_OPS, note="unrolled over a static sequence; constant weights, full-length sequences")
def recurrent(node: Node, b: GraphBuilder) -> list[Value | None]:
    return unroll(node, b, node.op_type)


def unroll(node: Node, b: GraphBuilder, kind: str, weights: tuple[np.ndarray, np.ndarray] | None = None) -> list[Value | None]:
    """`node` as ONNX's `kind` (LSTM, GRU, RNN) with its inputs in ONNX's order, unrolled; `weights`
    (input and recurrence weights, [dirs, gates x hidden, size] as ONNX lays them out) replace
    inputs 1 and 2 for the ops that store them otherwise (quantized)."""
    x = b.value(node.input(0))
    dtype = b.dtype(node.input(0))
    if dtype not in (np.float16, np.float32) or len(shape_of(x)) != 3:
        raise NotOnAne("a non-float or non-3-D input sequence")
    layout = node.attr("layout", 0)
    seq, batch, size = shape_of(x) if layout == 0 else (shape_of(x)[1], shape_of(x)[0], shape_of(x)[2])
    direction = node.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise NotOnAne(f"direction {direction!r}")
    dirs = 2 if direction == "bidirectional" else 1
    if seq * dirs > UNROLL_LIMIT:
        raise NotOnAne(f"{seq} steps x {dirs} direction(s) is more than the {UNROLL_LIMIT} steps anec unrolls")
    _check_lengths(node, b, seq)
    acts = _activations(node, kind, dirs)
    w, r = weights or (_required(node, b, 1, "input weights", dtype), _required(node, b, 2, "recurrence weights", dtype))
    w, r = w.astype(dtype), r.astype(dtype)
    gates, hidden = GATES[kind], r.shape[-1]
    bias = _required(node, b, 3, "biases", dtype) if node.input(3) else np.zeros((dirs, 2 * gates * hidden), dtype)
    peep = _required(node, b, 7, "peepholes", dtype) if kind == "LSTM" and node.input(7) else None
    clip = node.attr("clip")
    flat = b.reshape(x, (seq * batch, size))
    time_axis = 0 if layout == 0 else 1

    ys: list[list[SSAValue]] = []
    finals: list[tuple[SSAValue, SSAValue | None]] = []
    for d in range(dirs):
        step = Step(b, hidden, None if clip is None else float(clip), acts[d])
        wb, rb = bias[d, :gates * hidden], bias[d, gates * hidden:]
        lbr = kind == "GRU" and bool(node.attr("linear_before_reset", 0))
        # both biases fold into the input projection, except GRU's recurrent candidate bias with
        # linear_before_reset, which the reset gate multiplies
        folded = wb + (np.concatenate([rb[:2 * hidden], np.zeros(hidden, dtype)]) if lbr else rb)
        proj = b.add(ane.MatmulOp(flat, b.constant(np.ascontiguousarray(w[d].T), name=f"{node.name}.w{d}"),
                                   b.constant(folded, name=f"{node.name}.b{d}")))
        proj = b.reshape(proj, (seq, batch, gates * hidden) if layout == 0 else (batch, seq, gates * hidden))
        h = _state(node, b, 5, d, layout, batch, hidden)
        c = _state(node, b, 6, d, layout, batch, hidden) if kind == "LSTM" else None
        outs: dict[int, SSAValue] = {}
        reverse = direction == "reverse" or d == 1
        for t in (range(seq - 1, -1, -1) if reverse else range(seq)):
            lo, hi = [0, 0, 0], [*shape_of(proj)]
            lo[time_axis], hi[time_axis] = t, t + 1
            xt = b.reshape(b.add(ane.SliceOp(proj, lo, hi)), (batch, gates * hidden))
            if kind == "RNN":
                h = step.act(0, step.add(xt, step.project(h, r[d])))
            elif kind == "GRU":
                h = _gru_step(step, xt, h, r[d], rb[2 * hidden:] if lbr else None, lbr)
            else:
                h, c = _lstm_step(step, xt, h, c, r[d], None if peep is None else peep[d], bool(node.attr("input_forget", 0)))
            outs[t] = h
        ys.append([outs[t] for t in range(seq)])
        assert h is not None, "a sequence has at least one step"
        finals.append((h, c))
    return _outputs(node, b, ys, finals, layout, batch, hidden)


def _lstm_step(s: Step, xt: SSAValue, h: SSAValue | None, c: SSAValue | None, r: np.ndarray, peep: np.ndarray | None,
               coupled: bool) -> tuple[SSAValue, SSAValue]:
    i, o, f, g = s.split(s.add(xt, s.project(h, r)), 4)
    p = [None] * 3 if peep is None else [s.b.constant(peep[k * s.hidden:(k + 1) * s.hidden].reshape(1, -1), name="peephole") for k in range(3)]
    if p[0] is not None and c is not None:
        i = s.b.add(ane.AddOp(i, s.b.add(ane.MulOp(c, p[0]))))
    i = s.act(0, i)
    if coupled:
        f = s.b.add(ane.SubOp(s.b.scalar(1.0, i), i))
    else:
        if p[2] is not None and c is not None:
            f = s.b.add(ane.AddOp(f, s.b.add(ane.MulOp(c, p[2]))))
        f = s.act(0, f)
    c_new = s.add(s.mul(f, c), s.b.add(ane.MulOp(i, s.act(1, g))))
    assert c_new is not None
    if p[1] is not None:
        o = s.b.add(ane.AddOp(o, s.b.add(ane.MulOp(c_new, p[1]))))
    return s.b.add(ane.MulOp(s.act(0, o), s.acts[2](s.b, c_new))), c_new


def _gru_step(s: Step, xt: SSAValue, h: SSAValue | None, r: np.ndarray, rbh: np.ndarray | None, lbr: bool) -> SSAValue:
    hidden = s.hidden
    x_zr, x_h = list(s.b.insert(ane.SplitOp(xt, 1, [2 * hidden, hidden])).results)
    z, reset = s.split(s.add(x_zr, s.project(h, r[:2 * hidden])), 2)
    z, reset = s.act(0, z), s.act(0, reset)
    if lbr:
        recurrent = s.mul(reset, s.project(h, r[2 * hidden:], rbh))
    else:
        recurrent = s.project(s.mul(reset, h), r[2 * hidden:])
    candidate = s.act(1, s.add(x_h, recurrent))
    if h is None:  # (1 - z) * candidate
        return s.b.add(ane.SubOp(candidate, s.b.add(ane.MulOp(z, candidate))))
    return s.b.add(ane.AddOp(candidate, s.b.add(ane.MulOp(z, s.b.add(ane.SubOp(h, candidate))))))


def _outputs(node: Node, b: GraphBuilder, ys: Sequence[Sequence[SSAValue]], finals: Sequence[tuple[SSAValue, SSAValue | None]],
             layout: int, batch: int, hidden: int) -> list[Value | None]:
    """Y ([seq, dirs, batch, H] or [batch, seq, dirs, H]), Y_h and Y_c ([dirs, batch, H] or [batch, dirs, H])."""
    def concat(vals: Sequence[SSAValue], axis: int) -> SSAValue:
        return vals[0] if len(vals) == 1 else b.add(ane.ConcatOp(list(vals), axis))

    wanted = [k < len(node.outputs) and bool(node.outputs[k]) for k in range(3)]
    results: list[Value | None] = [None, None, None]
    if wanted[0]:
        step_shape = (1, 1, batch, hidden) if layout == 0 else (batch, 1, 1, hidden)
        per_dir = [concat([b.reshape(h, step_shape) for h in hs], 0 if layout == 0 else 1) for hs in ys]
        results[0] = concat(per_dir, 1 if layout == 0 else 2)
    state_shape = (1, batch, hidden) if layout == 0 else (batch, 1, hidden)
    for k in (0, 1):
        if wanted[k + 1]:
            states = [state for f in finals if (state := f[k]) is not None]
            assert len(states) == len(finals), "Y_c is an LSTM's output, and an LSTM has a cell state"
            results[k + 1] = concat([b.reshape(s, state_shape) for s in states], 0 if layout == 0 else 1)
    return results
