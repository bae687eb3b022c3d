"""What anec's Core ML packages are, shared by the writer (`anec.emit`) and the reader
(`anec.runtime.coreml`): deployment targets (which MIL opset), MIL identifiers, the package
metadata that records the model's original I/O names, and coremltools kept quiet.

coremltools itself is imported only inside the functions that need it (it imports torch).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from dataclasses import dataclass
from typing import Any

from anec.errors import AnecError


@dataclass(frozen=True)
class DeploymentTarget:
    """The oldest OS a package must run on: it fixes the MIL opset (`iOS16` … `iOS18`)."""

    name: str
    ios: int

    @property
    def opset(self) -> Any:
        """coremltools' `ct.target` member for this OS generation."""
        import coremltools as ct

        return getattr(ct.target, f"iOS{self.ios}")

    @property
    def fused_attention(self) -> bool:
        """MIL's `scaled_dot_product_attention` op exists from iOS 18 / macOS 15."""
        return self.ios >= 18


DEPLOYMENT_TARGETS: dict[str, int] = {"ios16": 16, "ios17": 17, "ios18": 18, "macos13": 16, "macos14": 17, "macos15": 18}
"""Deployment-target names -> the iOS generation whose MIL opset they share."""

DEFAULT_DEPLOYMENT_TARGET = "ios17"


def deployment_target(name: str) -> DeploymentTarget:
    key = name.lower().replace(" ", "").replace("_", "")
    if key not in DEPLOYMENT_TARGETS:
        raise AnecError(f"unknown deployment target {name!r}", hint=f"use one of {', '.join(DEPLOYMENT_TARGETS)}")
    return DeploymentTarget(key, DEPLOYMENT_TARGETS[key])


def mil_name(name: str) -> str:
    """`name` as a MIL identifier: letters, digits and underscores, not starting with a digit."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "v"
    return f"v_{cleaned}" if cleaned[0].isdigit() else cleaned


INPUT_NAMES_KEY = "anec.inputs"
OUTPUT_NAMES_KEY = "anec.outputs"
"""User-defined metadata of a package: the model's original input/output names, in MIL order."""


@contextlib.contextmanager
def quiet_coremltools():
    """coremltools logs import warnings (no Core ML runtime on Linux) and draws progress bars."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with contextlib.redirect_stderr(io.StringIO()):
        yield
