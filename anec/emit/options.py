"""What an emitter is told besides its input and destination."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmitOptions:
    chip: str
    """The display name of the chip the model was compiled for (recorded in Core ML packages)."""
    deployment_target: str = "ios17"
    """Oldest OS a Core ML package must run on (ios16/17/18, macos13/14/15): the MIL opset."""
