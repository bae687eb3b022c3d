"""A CNN (ResNet-50) with random weights: compile for the ANE, simulate, compare with PyTorch.

    python examples/cnn.py [--small] [--target m4] [--emit descriptors|coreml] [-o resnet50.anec]

Full size is ResNet-50 on a 224x224 image (pooled 2048 features); `--small` is a two-stage basic-block
ResNet of width 16-32 on a 64x64 image.
"""

from __future__ import annotations

from common import Example, hf_module, main, pixels


def build(small: bool) -> Example:
    size = dict(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic") if small else {}
    module = hf_module("ResNetModel", "ResNetConfig", "pooler_output", **size)
    return Example("resnet-small" if small else "resnet50", module, {"pixel_values": pixels(64 if small else 224)})


if __name__ == "__main__":
    main(__doc__.splitlines()[0], build)
