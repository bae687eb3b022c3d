"""`--emit descriptors`: a model's descriptor program as a `.anec` file (see docs/descriptor-format.md).

The pipeline builds and encodes the program (`anec.pipeline.descriptor_bytes`: one program section per
planned `anehw.program`, the rest of the function as the host graph); this emitter writes the bytes.
"""

from __future__ import annotations

from pathlib import Path

from anec.emit.options import EmitOptions


def emit_descriptors(encoded: bytes, path: Path, options: EmitOptions) -> None:
    """Writes PATH, the `.anec` file."""
    path.write_bytes(encoded)
