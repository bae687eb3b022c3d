"""The test MIL interpreter agrees with eager PyTorch on programs coremltools' converter makes.

This is what entitles the interpreter to judge anec's own Core ML output: each model below goes
through `torch.export` and `ct.convert`, is saved as a package, read back, run by the interpreter and
compared with the PyTorch module it came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tests import zoo
from tests.emit.mil_interpreter import load_package, run_program
from tests.emit.support import dtype_name, rel_l2

pytestmark = [pytest.mark.filterwarnings("ignore:Function _TORCH_OPS_REGISTRY:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning")]


class Vision(nn.Module):
    """Convolutions of every kind, norms, pools, resampling, padding and activations."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.c1d = nn.Conv1d(2, 6, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.fc = nn.Linear(16, 10)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        y = F.relu(self.bn(self.c1(x)))
        y = F.hardswish(self.dw(y)) + F.relu6(y)
        y = self.gn(y) + self.inorm(y)
        z = F.max_pool2d(y, 3, stride=2, padding=1) + F.avg_pool2d(y, 3, stride=2, padding=1, count_include_pad=False) + F.avg_pool2d(y, 2)
        u = F.interpolate(z, scale_factor=2, mode="nearest")
        v = F.interpolate(z, scale_factor=2, mode="bilinear", align_corners=False)
        w = F.interpolate(z, size=(8, 8), mode="bilinear", align_corners=True)
        t = self.up(u + v + w)
        s = F.pad(F.pixel_shuffle(torch.cat([t, t], 1), 2), (1, 2, 3, 0), mode="reflect")
        g = F.adaptive_avg_pool2d(F.leaky_relu(z, 0.1), 1).flatten(1)
        return torch.softmax(self.fc(torch.cat([g, g], 1)), -1), self.c1d(s.mean(dim=2)), F.elu(s).amax(dim=(2, 3))


class Text(nn.Module):
    """Embedding, attention (hand-written and fused), norms, math, reductions, top-k, cumsum."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.ln = nn.LayerNorm(16)
        self.qkv = nn.Linear(16, 48)
        self.out = nn.Linear(16, 16)

    def forward(self, ids, mask):
        x = self.ln(self.emb(ids))
        q, k, v = (t.view(1, 8, 2, 8).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        s = torch.where(mask[:, None, None, :] > 0, q @ k.transpose(-1, -2) / 8**0.5, torch.tensor(-1e4))
        h = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(1, 8, 16)
        h2 = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, 8, 16)
        y = self.out(F.gelu(h) + F.gelu(h2, approximate="tanh"))
        y = y + torch.sigmoid(x) * F.silu(x) - torch.erf(x) + torch.exp(-x.abs()) * torch.sqrt(x.abs() + 1)
        y = y + torch.log(x.abs() + 1) + torch.rsqrt(x.abs() + 1)
        y = y.clamp(-2, 2) + x[:, 1:5].sum(1, keepdim=True) - x.max(-1, keepdim=True).values + x.min(1, keepdim=True).values
        values, indices = torch.topk(y, 3, dim=-1)
        return y, torch.cumsum(y, 1), values, indices.to(torch.int32), y.argmax(-1).to(torch.int32)


class Indexing(nn.Module):
    """Gathers, flips, tiling, block moves, triangular masks, einsum and the rarer reductions."""

    def forward(self, x, idx):
        y = torch.gather(x, 2, idx) + torch.flip(x, [3])[:, :, :3] + x.tile(1, 1, 1, 2)[:, :, :3, 1:5]
        blocks = F.pixel_unshuffle(x[:, :, :, :2].repeat(1, 1, 1, 2), 2)
        tri = torch.triu(x[0, 0], diagonal=1) - torch.tril(x[0, 1])
        product = torch.einsum("bchw,bcwk->bchk", x, x.transpose(2, 3))
        norms = torch.logsumexp(x, dim=1) + torch.linalg.vector_norm(x, dim=3)[..., None] + (x * x).sum(dim=2, keepdim=True)
        return y, blocks, tri, product, norms, F.lp_pool2d(x.abs(), 2, 2)


def convert_with_coremltools(model, args: tuple, **options):
    """`ct.convert` of `model`'s torch.export program: ATen ops as exported when coremltools takes
    them (`run_decompositions({})`), else decomposed to core ATen (HF BERT's `new_ones`)."""
    import coremltools as ct

    exported = torch.export.export(model, args)
    try:
        return ct.convert(exported.run_decompositions({}), convert_to="mlprogram", skip_model_load=True, **options)
    except NotImplementedError:
        return ct.convert(exported.run_decompositions(), convert_to="mlprogram", skip_model_load=True, **options)


def _convert(model, inputs: dict[str, np.ndarray], path: Path, target: str, fp16: bool):
    """(the package's MIL read back, eager outputs)."""
    import coremltools as ct

    from anec.mlpackage import quiet_coremltools

    args = tuple(torch.from_numpy(v) for v in inputs.values())
    with torch.no_grad():
        expected = model(*args)
    with quiet_coremltools():
        precision = ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32
        mlmodel = convert_with_coremltools(model, args, compute_precision=precision, minimum_deployment_target=getattr(ct.target, target))
        mlmodel.save(str(path))
        loaded = load_package(path)
    return loaded, expected if isinstance(expected, tuple) else (expected,)


def _random_inputs(name: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if name == "vision":
        return {"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
    if name == "indexing":
        return {"x": rng.standard_normal((1, 2, 4, 4)).astype(np.float32), "idx": rng.integers(0, 4, (1, 2, 3, 4))}
    return {"ids": rng.integers(0, 50, (1, 8)), "mask": np.array([[1, 1, 1, 1, 1, 1, 0, 0]])}


CASES = [
    # (model, target, fp16, tolerance on relative L2)
    ("vision", "iOS17", False, 1e-5),
    ("text", "iOS17", False, 1e-5),
    ("text", "iOS18", False, 1e-5),       # fused scaled_dot_product_attention
    ("indexing", "iOS17", False, 1e-5),
    ("bert-tiny", "iOS17", False, 1e-5),
    ("resnet-tiny", "iOS17", False, 1e-5),
    ("bert-tiny", "iOS17", True, 1e-2),   # fp16 storage after every op
    ("resnet-tiny", "iOS17", True, 1e-2),
]


@pytest.mark.parametrize(("name", "target", "fp16", "tolerance"), CASES, ids=[f"{c[0]}-{c[1]}-{'fp16' if c[2] else 'fp32'}" for c in CASES])
def test_interpreter_matches_pytorch_on_coremltools_programs(name: str, target: str, fp16: bool, tolerance: float, tmp_path: Path):
    torch.manual_seed(0)
    if name in zoo.ZOO:
        model, inputs = zoo.torch_model(name)
    else:
        model, inputs = {"vision": Vision, "text": Text, "indexing": Indexing}[name]().eval(), _random_inputs(name)
    program, expected = _convert(model, inputs, tmp_path / "model.mlpackage", target, fp16)
    function = program.functions["main"]
    op_types = {op.op_type for op in function.operations}
    if fp16:
        assert any(dtype_name(var) == "fp16" for op in function.operations for var in op.outputs), "expected an fp16 program"
    if name == "text":
        assert ("scaled_dot_product_attention" in op_types) == (target == "iOS18")
    outputs = run_program(program, dict(zip(function.inputs, inputs.values())))
    assert len(outputs) == len(expected)
    for (out_name, got), want in zip(outputs.items(), expected):
        want = want.numpy()
        if want.dtype.kind in "iu":
            np.testing.assert_array_equal(got, want, err_msg=out_name)
        else:
            assert rel_l2(got, want) <= tolerance, f"{out_name}: relative L2 {rel_l2(got, want):.2e} > {tolerance}"


def test_interpreter_rejects_an_op_it_does_not_know():
    """An unknown op is an error, never a silently skipped op."""
    from coremltools.converters.mil.mil import Builder as mb

    from anec.mlpackage import quiet_coremltools

    with quiet_coremltools():
        @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))])
        def program(x):
            return mb.local_response_norm(x=mb.expand_dims(x=x, axes=[0]), size=3)

    with pytest.raises(NotImplementedError, match="local_response_norm"):
        run_program(program, {"x": np.ones((2, 3), np.float32)})
