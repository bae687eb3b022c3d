"""A vision transformer (ViT-B/16) with random weights: compile for the ANE, simulate, compare with PyTorch.

    python examples/vit.py [--small] [--target m4] [--emit descriptors|coreml] [-o vit.anec]

Full size is ViT-B/16 on a 224x224 image (197 tokens of width 768); `--small` is 2 layers of width 64
on a 32x32 image in 8x8 patches.
"""

from __future__ import annotations

from common import Example, hf_module, main, pixels


def build(small: bool) -> Example:
    size = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32,
                patch_size=8) if small else {}
    module = hf_module("ViTModel", "ViTConfig", "last_hidden_state", add_pooling_layer=False, **size)
    return Example("vit-small" if small else "vit-b16", module, {"pixel_values": pixels(32 if small else 224)})


if __name__ == "__main__":
    main(__doc__.splitlines()[0], build)
