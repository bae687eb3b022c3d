"""Fixtures shared across the suite: imported zoo models, built once per session."""

from __future__ import annotations

import os

import pytest
from xdsl.dialects.builtin import ModuleOp

os.environ.setdefault("ANEC_VERIFY_EACH", "1")  # every pass's output verified, so a test names the pass that broke the IR


@pytest.fixture(scope="session")
def bert_tiny_module() -> ModuleOp:
    """bert-tiny (legacy export) imported from ONNX; tests clone it before changing it."""
    from anec.importers.onnx import import_onnx
    from tests import zoo

    return import_onnx(zoo.onnx_model("bert-tiny", "legacy"))
