"""Running compiled models: ANE segments in fp16, host segments on the CPU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from anec.interpreter import entry_function, interpret, output_names

if TYPE_CHECKING:
    from anec.pipeline import CompiledModel


def run_compiled(model: CompiledModel, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs by name. ANE segments run on the IR interpreter with fp16 storage."""
    outs = interpret(model.ir, inputs, precision="f32", segments="f16")
    return dict(zip(output_names(entry_function(model.ir)), outs))
