"""`torch.compile(model, backend="anec")`: the ANE runs what it can, PyTorch runs the rest.

    python examples/torch_compile.py [--target m4]

A small image classifier whose last step is `torch.topk`: Dynamo captures the graph and anec compiles
the ANE-capable partition (fp16, on the simulator here): all of it on an M4, everything but `topk`
on an M1 (whose code generator fails top-k), which leaves it to eager PyTorch. The script prints anec's report for every captured graph and compares the result
with eager PyTorch. No `import anec` is needed for the backend: it is an installed entry point.
"""

from __future__ import annotations

import argparse

import torch


class SmallClassifier(torch.nn.Module):
    """conv → relu → conv → global average pool → linear → softmax, then the three best classes."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(32, classes)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities = self.head(self.features(image).mean(dim=(2, 3))).softmax(dim=-1)
        return probabilities, torch.topk(probabilities, 3).indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="m4", help="chip to compile for (default m4)")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = SmallClassifier().eval()
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    fast = torch.compile(model, backend="anec", options={"target": args.target}, dynamic=False)
    with torch.no_grad():
        expected, expected_top3 = model(image)
        probabilities, top3 = fast(image)

    from anec.integrations.dynamo import (
        REPORTS,  # filled by the backend, one report per captured graph
    )

    for i, report in enumerate(REPORTS):
        print(f"graph {i}: {report.partitions} ANE partition(s), {report.ane_flops_fraction:.1%} of "
              f"{report.total_flops:,} FLOPs on the ANE of the {report.target}"
              + (f"; runs eagerly: {report.fallback}" if report.fallback else ""))
        for node, op, why in report.host_ops:
            print(f"  eager {op} ({node}): {why}")
    error = float((probabilities - expected).abs().max())
    print(f"max |anec - eager| = {error:.3g}; top-3 classes {top3.tolist()[0]} (eager: {expected_top3.tolist()[0]})")
    matches = error < 1e-2 and torch.equal(top3, expected_top3)
    print(f"match: {'yes' if matches else 'NO'} (fp16 tolerance 1e-2 on probabilities, same top-3 classes)")
    if not matches:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
