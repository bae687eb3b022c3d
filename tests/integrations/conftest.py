"""Prints the torch zoo's table (route, cosine to eager, fraction of FLOPs on the ANE) after the run."""

from __future__ import annotations

import pytest

from tests.integrations.test_torch_zoo import SUMMARY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.section("torch zoo: agreement with eager PyTorch and FLOPs on the ANE")
        for line in lines:
            terminalreporter.write_line(line)
