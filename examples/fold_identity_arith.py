"""A researcher's pass: fold `x * 1`, `x / 1`, `x + 0` and `x - 0` away on anec's `ane` dialect.

Exported models are full of these (a scale that became 1.0, a zero bias); each one costs the ANE a
full pass over its tensor. The pass is an ordinary xDSL ModulePass; `anec opt` runs it without
installing anything:

    anec opt examples/identity_arith.mlir --load-pass examples/fold_identity_arith.py -p fold-identity-arith

Running this file prints the IR before and after the pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from anec.dialects import ane
from anec.weights import const_value

IDENTITY_OPERAND: dict[type[ane.BinaryOp], float] = {ane.MulOp: 1.0, ane.DivOp: 1.0, ane.AddOp: 0.0, ane.SubOp: 0.0}
"""For each binary op, the right-hand constant that leaves the left-hand side unchanged."""


class FoldIdentityOperand(RewritePattern):
    """op(x, c) → x when every element of the constant c is op's identity and c does not broadcast x."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ane.BinaryOp, rewriter: PatternRewriter) -> None:
        identity = IDENTITY_OPERAND.get(type(op))
        const = op.rhs.owner
        if identity is None or not isinstance(const, ane.ConstOp) or op.lhs.type != op.result.type:
            return
        if np.all(const_value(const) == identity):
            rewriter.replace_op(op, [], [op.lhs])


@dataclass(frozen=True)
class FoldIdentityArithPass(ModulePass):
    name = "fold-identity-arith"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(FoldIdentityOperand()).rewrite_module(op)


def main() -> None:
    from anec.cli import main as anec

    example = Path(__file__).with_name("identity_arith.mlir")
    print("// before", flush=True)
    anec(["opt", str(example)])
    print("// after -p fold-identity-arith", flush=True)
    anec(["opt", str(example), "--load-pass", __file__, "-p", "fold-identity-arith,dce"])


if __name__ == "__main__":
    main()
