"""`--emit descriptors`: a model's descriptor program as a `.anec` file (see docs/descriptor-format.md).

The pipeline builds the program (`anec.descriptors.build.anec_file`: one program section per planned
`anehw.program`, the rest of the function as the host graph); this emitter encodes and writes it.
"""

from __future__ import annotations

from pathlib import Path

from anec.descriptors.binary import encode
from anec.descriptors.program import AnecFile
from anec.emit.options import EmitOptions


def emit_descriptors(program: AnecFile, path: Path, options: EmitOptions) -> None:
    """Writes PATH, the `.anec` file."""
    path.write_bytes(encode(program))
