"""Prints the torch zoo's table (route, cosine to eager, fraction of FLOPs on the ANE) after the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integrations.test_torch_zoo import SUMMARY


@pytest.fixture
def fresh_dynamo() -> None:
    """Dynamo and the backend's reports and warnings as a new process has them."""
    import torch

    from anec.integrations import dynamo

    torch._dynamo.reset()
    dynamo.REPORTS.clear()
    dynamo.WARNED.clear()
    dynamo.watch_dynamo()  # as importing the backend does (torch._dynamo.reset() drops Dynamo's callbacks)


@pytest.fixture(autouse=True)
def private_compile_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test compiles into its own empty compile cache (never the user's ~/.cache/anec)."""
    monkeypatch.setenv("ANEC_CACHE_DIR", str(tmp_path / "anec-cache"))
    return tmp_path / "anec-cache"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.section("torch zoo: agreement with eager PyTorch and FLOPs on the ANE")
        for line in lines:
            terminalreporter.write_line(line)
