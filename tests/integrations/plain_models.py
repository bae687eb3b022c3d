"""Small models in plain torch (no transformers): a CNN, an MLP and a pre-norm attention block.

Seeded, in eval mode, with inputs by name like `tests.zoo` entries, so the torch zoo test treats
them like the transformers models.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=2), nn.BatchNorm2d(32), nn.Hardswish(),
            nn.Conv2d(32, 32, 1), nn.SiLU(),
        )
        self.head = nn.Linear(32, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(image), 1).flatten(1)
        return F.softmax(self.head(x), dim=-1)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Dropout(0.1), nn.Linear(256, 128), nn.Tanh(), nn.Linear(128, 16))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class AttentionBlock(nn.Module):
    """Pre-norm transformer block with causal scaled-dot-product attention."""

    def __init__(self, dim: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, t, d = tokens.shape
        q, k, v = self.qkv(self.norm1(tokens)).chunk(3, dim=-1)
        q, k, v = (y.view(b, t, self.heads, d // self.heads).transpose(1, 2) for y in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = tokens + self.out(attended)
        return x + self.mlp(self.norm2(x))


def _seeded(cls: type[nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        model = cls().eval()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
        return model
    return build


def _inputs(**shapes: tuple[int, ...]) -> Callable[[], dict[str, np.ndarray]]:
    return lambda: {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


PLAIN: dict[str, tuple[Callable[[], nn.Module], Callable[[], dict[str, np.ndarray]]]] = {
    "small-cnn": (_seeded(SmallCNN), _inputs(image=(2, 3, 32, 32))),
    "mlp": (_seeded(MLP), _inputs(features=(8, 64))),
    "attention-block": (_seeded(AttentionBlock), _inputs(tokens=(2, 16, 64))),
}
"""name -> (build the module, make its inputs by name)."""
