"""The ATen handler table, op by op: each case is exported with torch.export, imported, run by the
interpreter in f32 and compared with eager PyTorch; it also states which ops must stay on the CPU."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from anec.dialects import ane
from anec.dialects.host import HostOp
from anec.importers.torch import import_torch
from anec.interpreter import interpret

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.export's own deprecation noise


class Fn(nn.Module):
    """A module around a function, with optional layers it may use as `m.layer`."""

    def __init__(self, fn: Callable, layer: nn.Module | None = None):
        super().__init__()
        self.fn = fn
        self.layer = layer

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(self, *xs)


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@dataclass
class Case:
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    host: set[str] = field(default_factory=set)
    """The ATen ops that must become host ops (everything else must become `ane` ops)."""
    has: type | None = None
    """An `ane` op class the import must contain."""


def fn(f: Callable, *inputs: torch.Tensor, layer: nn.Module | None = None, host: set[str] | None = None, has: type | None = None) -> Case:
    torch.manual_seed(0)
    return Case(Fn(f, layer).eval(), inputs, host or set(), has)


X4 = rand(2, 8, 10, 12)
X3 = rand(2, 6, 16)
IDS = torch.tensor([[1, 5, 2, 7]])

CASES: dict[str, Callable[[], Case]] = {
    # convolution and friends
    "conv2d": lambda: fn(lambda m, x: m.layer(x), X4, layer=nn.Conv2d(8, 16, 3, stride=2, padding=1), has=ane.ConvOp),
    "conv2d_groups_dilation": lambda: fn(lambda m, x: m.layer(x), X4, layer=nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4, bias=False)),
    "conv_depthwise": lambda: fn(lambda m, x: m.layer(x), X4, layer=nn.Conv2d(8, 8, 5, padding=2, groups=8)),
    "conv1d": lambda: fn(lambda m, x: m.layer(x), X3, layer=nn.Conv1d(6, 4, 3, padding=1), has=ane.ConvOp),
    "conv_transpose2d": lambda: fn(lambda m, x: m.layer(x), X4, layer=nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, output_padding=1),
                                   has=ane.ConvTransposeOp),
    "batch_norm": lambda: fn(lambda m, x: m.layer(x), X4, layer=_bn(8), has=ane.MulOp),
    "max_pool": lambda: fn(lambda m, x: F.max_pool2d(x, 3, 2, 1), X4, has=ane.MaxPoolOp),
    "max_pool_ceil": lambda: fn(lambda m, x: F.max_pool2d(x, 2, 2, ceil_mode=True), rand(1, 3, 7, 9), has=ane.PadOp),
    "avg_pool": lambda: fn(lambda m, x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), X4, has=ane.AvgPoolOp),
    "adaptive_avg_pool_global": lambda: fn(lambda m, x: F.adaptive_avg_pool2d(x, 1), X4),
    "adaptive_avg_pool_2x3": lambda: fn(lambda m, x: F.adaptive_avg_pool2d(x, (2, 3)), X4, has=ane.AvgPoolOp),
    # matrix products
    "linear_3d": lambda: fn(lambda m, x: m.layer(x), X3, layer=nn.Linear(16, 5), has=ane.MatmulOp),
    "linear_no_bias": lambda: fn(lambda m, x: m.layer(x), rand(4, 16), layer=nn.Linear(16, 5, bias=False)),
    "bmm": lambda: fn(lambda m, a, b: torch.bmm(a, b), rand(3, 4, 5), rand(3, 5, 6, seed=1)),
    "matmul_broadcast": lambda: fn(lambda m, a, b: a @ b, rand(2, 3, 4, 5), rand(5, 6, seed=1)),
    "addmm_beta_alpha": lambda: fn(lambda m, c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=2.0), rand(4, 6), rand(4, 5, seed=1), rand(5, 6, seed=2)),
    "sdpa": lambda: fn(lambda m, q, k, v: F.scaled_dot_product_attention(q, k, v), rand(1, 2, 5, 8), rand(1, 2, 7, 8, seed=1), rand(1, 2, 7, 4, seed=2),
                       has=ane.SdpaOp),
    "sdpa_causal": lambda: fn(lambda m, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3),
                              rand(1, 2, 6, 8), rand(1, 2, 6, 8, seed=1), rand(1, 2, 6, 8, seed=2), has=ane.SdpaOp),
    "sdpa_bool_mask": lambda: fn(lambda m, q, k, v, mask: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                                 rand(1, 2, 5, 8), rand(1, 2, 5, 8, seed=1), rand(1, 2, 5, 8, seed=2), torch.rand(1, 1, 5, 5) > 0.3),
    "sdpa_float_mask": lambda: fn(lambda m, q, k, v, mask: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                                  rand(1, 2, 5, 8), rand(1, 2, 5, 8, seed=1), rand(1, 2, 5, 8, seed=2), rand(5, 5, seed=3)),
    # normalization, softmax, reductions
    "layer_norm": lambda: fn(lambda m, x: m.layer(x), X3, layer=nn.LayerNorm(16), has=ane.LayerNormOp),
    "layer_norm_2d_no_affine": lambda: fn(lambda m, x: F.layer_norm(x, (6, 16)), X3),
    "group_norm": lambda: fn(lambda m, x: m.layer(x), X4, layer=nn.GroupNorm(4, 8), has=ane.GroupNormOp),
    "softmax": lambda: fn(lambda m, x: F.softmax(x, dim=1), X3, has=ane.SoftmaxOp),
    "log_softmax": lambda: fn(lambda m, x: F.log_softmax(x, dim=-1), X3),
    "mean_sum_amax": lambda: fn(lambda m, x: x.mean((2, 3), keepdim=True) + x.sum(1, keepdim=True).amax(-1, keepdim=True), X4),
    "var_std": lambda: fn(lambda m, x: x.var(-1, keepdim=True) + x.std(1, unbiased=False, keepdim=True), X3),
    "vector_norms": lambda: fn(lambda m, x: F.normalize(x, dim=-1) + x.norm(p=1, dim=1, keepdim=True)
                               + torch.linalg.vector_norm(x, ord=math.inf, dim=-1, keepdim=True), X3, has=ane.SqrtOp),
    "vector_norm_3_on_the_cpu": lambda: fn(lambda m, x: x.norm(p=3, dim=-1), X3, host={"aten.linalg_vector_norm.default"}),
    "argmax_max_dim": lambda: fn(lambda m, x: (x.argmax(1).float() + x.max(dim=2).values.sum(-1, keepdim=True)), X3, has=ane.ArgmaxOp),
    "reduce_all": lambda: fn(lambda m, x: x - x.mean() + x.sum(), X3),
    # elementwise
    "activations": lambda: fn(lambda m, x: F.gelu(x) + F.silu(x) + torch.tanh(x) + torch.sigmoid(x) + F.hardswish(x)
                              + F.leaky_relu(x, 0.2) + F.elu(x) + F.hardsigmoid(x) + F.softplus(x), X3, has=ane.GeluOp),
    "gelu_tanh": lambda: fn(lambda m, x: F.gelu(x, approximate="tanh"), X3),
    "clamp_hardtanh_relu6": lambda: fn(lambda m, x: x.clamp(-0.5, 0.7) + F.hardtanh(x, -0.2, 0.3) + F.relu6(x * 4) + x.clamp(min=0.1), X3,
                                       has=ane.ClampOp),
    "unary_math": lambda: fn(lambda m, x: torch.exp(x) + torch.log(x.abs() + 1) + torch.sqrt(x.abs()) + torch.rsqrt(x.abs() + 1)
                             + torch.erf(x) + 1 / (x.abs() + 1) - x.neg(), X3),
    "arithmetic_scalars": lambda: fn(lambda m, x, y: (x + 2 * y) * 3 - 1.5 / (y.abs() + 1) + torch.add(x, y, alpha=0.5) - torch.rsub(x, 1.0),
                                     X3, rand(6, 16, seed=1)),
    "pow": lambda: fn(lambda m, x: x**2 + x.abs() ** 0.5 + (x.abs() + 1) ** -1 + (x.abs() + 1) ** 1.7 + 2 ** x, X3, has=ane.PowOp),
    "max_min_where": lambda: fn(lambda m, x, y: torch.where(x > y, torch.maximum(x, y), torch.minimum(x, y) * 2), X3, rand(2, 6, 16, seed=1),
                                has=ane.SelectOp),
    "compare_cast": lambda: fn(lambda m, x: (x >= 0.1).float() + (x < -0.2).to(torch.float32) * 2 + (x == x).float(), X3),
    "logical_ops": lambda: fn(lambda m, x: ((x > 0) & (x < 0.5) | (x < -1) ^ (x > 1)).float() + torch.logical_not(x > 0).float(), X3,
                              has=ane.SelectOp),
    "isnan_isinf_log_variants": lambda: fn(lambda m, x: torch.isnan(x).float() + torch.isinf(1 / x).float() + torch.log2(x.abs() + 1)
                                           + torch.log10(x.abs() + 1) + torch.log1p(x.abs()) + torch.expm1(x), X3),
    "clamp_tensor_copy_fill": lambda: fn(lambda m, x, lo: torch.clamp(x, min=lo, max=lo + 1) + torch.ops.aten.copy.default(x, lo)
                                         + torch.ops.aten.fill.Scalar(x, 2.0), X3, rand(1, 16, seed=1)),
    "masked_fill": lambda: fn(lambda m, x: x.masked_fill(x > 0.5, -1.0), X3),
    "int_arithmetic": lambda: fn(lambda m, i: (i * 3 + 1) // 2, IDS, host={"aten.div.Tensor_mode"}),
    # data movement
    "view_permute_transpose": lambda: fn(lambda m, x: x.view(2, 6, 4, 4).permute(0, 2, 3, 1).transpose(1, 2).reshape(2, -1), X3),
    "expand_repeat": lambda: fn(lambda m, x: x[:, :1].expand(2, 5, 16) + x[:, :1].repeat(1, 5, 1), X3, has=ane.TileOp),
    "slice_select_narrow": lambda: fn(lambda m, x: x[:, 1:5:2, -4:] + x.select(1, -1).unsqueeze(1)[..., 2:6] + x.narrow(2, 3, 4)[:, 1:3], X3),
    "cat_split_chunk_unbind": lambda: fn(lambda m, x: torch.cat(x.split([5, 11], -1)[::-1], -1)
                                         + torch.stack(x.chunk(2, dim=1)[0].unbind(1), 1).sum(1, keepdim=True), X3,
                                         has=ane.SplitOp),
    "pad": lambda: fn(lambda m, x: F.pad(x, (1, 2, 3, 0), value=0.5), X4, has=ane.PadOp),
    "pad_reflect_replicate": lambda: fn(lambda m, x: F.pad(x, (2, 1, 1, 3), mode="reflect") + F.pad(x, (2, 1, 1, 3), mode="replicate"),
                                        X4),
    "pixel_shuffle": lambda: fn(lambda m, x: F.pixel_shuffle(x, 2), X4, has=ane.DepthToSpaceOp),
    "upsample_nearest": lambda: fn(lambda m, x: F.interpolate(x, scale_factor=2, mode="nearest"), X4, has=ane.ResizeOp),
    "upsample_bilinear": lambda: fn(lambda m, x: F.interpolate(x, size=(15, 20), mode="bilinear"), X4),
    "upsample_bilinear_align_corners": lambda: fn(lambda m, x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True), X4),
    "index_by_constant_ranges": lambda: fn(lambda m, x: x[torch.arange(2)[:, None, None], torch.arange(1, 6, 2)[None, None, :],
                                                          torch.arange(4)[None, :, None]]
                                           + x[torch.tensor(1), torch.arange(2, 6)[:, None], torch.arange(3)[None, :]], X3,
                                           has=ane.TransposeOp),
    "flatten_squeeze": lambda: fn(lambda m, x: x.unsqueeze(0).flatten(2).squeeze(0), X4),
    # constants folded at import, and shape-only constants
    "folded_arange_mask": lambda: fn(lambda m, x: x + torch.arange(16).float() * (torch.ones(6, 16).tril() - 0.5), X3),
    "zeros_like": lambda: fn(lambda m, x: torch.zeros_like(x) + torch.full_like(x, 2.0) * x, X3),
    # host ops: kept whole and run by torch
    "embedding": lambda: fn(lambda m, i: m.layer(i) * 2, IDS, layer=nn.Embedding(10, 4), host={"aten.embedding.default"}),
    "index_gather_cumsum": lambda: fn(lambda m, x, i: x[:, i[0]].cumsum(-1).sum(1, keepdim=True) + torch.gather(x, 2, i[:, None, :1].expand(2, 6, 1)), X3,
                                      torch.tensor([[3, 0, 2]]), host={"aten.index.Tensor", "aten.cumsum.default", "aten.gather.default"}),
    "topk_sort_multi_output": lambda: fn(lambda m, x: x.topk(3, dim=-1).values + x.sort(-1, descending=True).values[..., :3]
                                         + x.topk(3, dim=-1).indices.float() + x.sort(-1).indices[..., :3].float(), X3, has=ane.TopkOp),
    "topk_smallest_inner_dim": lambda: fn(lambda m, x: x.topk(2, dim=1, largest=False).values * 2, X3, has=ane.TopkOp),
    "flip_floor": lambda: fn(lambda m, x: torch.flip(x, [1]).floor() + torch.round(x * 3), X3,
                             host={"aten.flip.default", "aten.floor.default", "aten.round.default"}),
}


def _bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    g = torch.Generator().manual_seed(1)
    bn.running_mean.copy_(torch.randn(c, generator=g))
    bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    bn.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
    bn.bias.data.copy_(torch.randn(c, generator=g))
    return bn


@pytest.mark.parametrize("name", sorted(CASES))
def test_aten_op_imports_and_matches_eager(name: str) -> None:
    case = CASES[name]()
    with torch.no_grad():
        expected = case.module(*case.inputs)
    module = import_torch(case.module, example_inputs=case.inputs)
    hosts = {op.op_name.data for op in module.walk() if isinstance(op, HostOp)}
    assert hosts == case.host
    if case.has is not None:
        assert any(isinstance(op, case.has) for op in module.walk())
    (got,) = interpret(module, [x.numpy() for x in case.inputs], precision="f32")
    assert got.shape == tuple(expected.shape) and got.dtype == expected.numpy().dtype
    np.testing.assert_allclose(got, expected.numpy(), rtol=2e-5, atol=2e-5)


def test_every_imported_op_is_named_after_its_fx_node() -> None:
    case = CASES["conv2d"]()
    module = import_torch(case.module, example_inputs=case.inputs)
    ops = [op for op in module.walk() if op.name.startswith(("ane.", "host."))]
    assert ops and all("ane.name" in op.attributes for op in ops)
    assert {op.attributes["ane.name"].data for op in ops if isinstance(op, ane.ConvOp)} == {"convolution"}


def test_math_is_imported_in_the_module_dtype() -> None:
    """An int64 tensor added to a float scalar is promoted like torch does: to float32."""
    case = fn(lambda m, i: i + 0.5, IDS)
    module = import_torch(case.module, example_inputs=case.inputs)
    (got,) = interpret(module, [IDS.numpy()])
    assert got.dtype == np.float32 and np.allclose(got, IDS.numpy() + 0.5)
    assert math.isclose(float(got[0, 0]), 1.5)
