"""torch.compile(backend="anec") in a fresh process, with an empty and then a warm compile cache:
the first call's wall time and the part of it anec spends placing and compiling the graph
(`partitioned_forward`; the rest is Dynamo's and AOTAutograd's tracing, which no cache skips), and
whether the warm run read everything from the cache (nothing imported, no pass run).

    python benchmarks/compile_cache.py [--model attention-block]   # a model of tests/integrations/plain_models.py
    python benchmarks/compile_cache.py --model gpt2-4x512            # transformers' GPT2Model, 4 layers of 512 (full vocabulary)
    python benchmarks/compile_cache.py --model bert-tiny             # a model of tests/zoo.py

Each run is a new Python process sharing one temporary `ANEC_CACHE_DIR`. Numbers come from a
shared machine: read them as ranges.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import torch
from anec.integrations import dynamo
from tests import zoo
from tests.integrations.plain_models import PLAIN

GPT2 = zoo.ZooEntry(zoo._hf("GPT2Model", "GPT2Config", "last_hidden_state", n_layer=4, n_embd=512, n_head=8), zoo._tokens(50257, with_mask=False),
                    "last_hidden_state")
name = sys.argv[1]
build, inputs = PLAIN[name] if name in PLAIN else (GPT2.build, GPT2.inputs) if name == "gpt2-4x512" else (zoo.ZOO[name].build, zoo.ZOO[name].inputs)
model, args = build(), [torch.from_numpy(v) for v in inputs().values()]
spent = []
inner = dynamo.partitioned_forward
def timed(*a, **k):
    start = time.perf_counter()
    try:
        return inner(*a, **k)
    finally:
        spent.append(time.perf_counter() - start)
dynamo.partitioned_forward = timed
start = time.perf_counter()
with torch.no_grad():
    torch.compile(model, backend="anec")(*args)
print(json.dumps({"first_call_s": time.perf_counter() - start, "anec_s": sum(spent), "partitions": sum(r.partitions for r in dynamo.REPORTS),
                  "from_cache": all(r.from_cache for r in dynamo.REPORTS)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="attention-block", help="a model of tests/integrations/plain_models.py or tests/zoo.py, or gpt2-4x512")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="anec-cache-") as cache:
        env = {**os.environ, "ANEC_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        for run in ("empty cache", "warm cache"):
            out = subprocess.run([sys.executable, "-c", CHILD, args.model], env=env, check=True, capture_output=True, text=True)
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{args.model} {run:12s} first call {figures['first_call_s']:6.2f} s, of which anec {figures['anec_s']:6.3f} s "
                  f"({figures['partitions']} ANE partitions{', all read from the cache' if figures['from_cache'] else ''})")


if __name__ == "__main__":
    main()
