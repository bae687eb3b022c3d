import subprocess
import sys

import pytest

LARGE_PARENT = """
import subprocess, sys
held = bytearray(b"\\x01") * (384 * 2**20)  # resident: every page written
print(subprocess.run([sys.executable, "-c", "from anec.pipeline import peak_memory_mb; print(peak_memory_mb())"],
                     capture_output=True, text=True, check=True).stdout)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the inherited ru_maxrss is Linux's (fork copies the high-water mark)")
def test_peak_memory_of_a_process_started_by_a_large_one_is_its_own():
    done = subprocess.run([sys.executable, "-c", LARGE_PARENT], capture_output=True, text=True, check=True)
    assert float(done.stdout) < 200  # the child imports anec (≈60 MiB), not the parent's 384 MiB


GROWING = """
from anec.pipeline import peak_memory_mb
before = peak_memory_mb()
held = bytearray(b"\\x01") * (256 * 2**20)
print(peak_memory_mb() - before)
"""


def test_peak_memory_grows_by_what_the_process_comes_to_hold():
    done = subprocess.run([sys.executable, "-c", GROWING], capture_output=True, text=True, check=True)
    assert 250 < float(done.stdout) < 600  # the 256 MiB held (the multiplication may briefly hold a second copy)
