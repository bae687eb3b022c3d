"""The test model zoo: real architectures with seeded random weights, built without network access.

`torch_model(name)` gives (module, example inputs); `onnx_model(name, exporter)` exports it once
per machine to a cache folder (`ANEC_TEST_CACHE`, default ~/.cache/anec/test-models) under a file
lock, so parallel test workers and repeated runs share one file. Exported files never go in git.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CACHE = Path(os.environ.get("ANEC_TEST_CACHE", Path.home() / ".cache" / "anec" / "test-models"))
SEQ = 128
IMAGE = 224


@dataclass(frozen=True)
class ZooEntry:
    build: Callable[[], Any]              # () -> torch.nn.Module in eval mode
    inputs: Callable[[], dict[str, np.ndarray]]
    output: str                           # the output the wrapper returns


def _tokens(vocab: int = 30522, with_mask: bool = True) -> Callable[[], dict[str, np.ndarray]]:
    def make() -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        out = {"input_ids": rng.integers(0, vocab, size=(1, SEQ), dtype=np.int64)}
        if with_mask:
            out["attention_mask"] = np.ones((1, SEQ), dtype=np.int64)
        return out
    return make


def _pixels(size: int = IMAGE, channels: int = 3) -> Callable[[], dict[str, np.ndarray]]:
    return lambda: {"pixel_values": np.random.default_rng(0).standard_normal((1, channels, size, size)).astype(np.float32)}


def _features() -> dict[str, np.ndarray]:
    return {"input_features": np.random.default_rng(0).standard_normal((1, 80, 3000)).astype(np.float32)}


def _hf(model_cls: str, config_cls: str, output: str, **config: Any) -> Callable[[], Any]:
    def build() -> Any:
        import torch
        import transformers

        torch.manual_seed(0)
        cfg = getattr(transformers, config_cls)(**config)
        model = getattr(transformers, model_cls)(cfg)
        return _wrap(model, output).eval()
    return build


def _reinit_batchnorm(module: Any) -> Any:
    """Random BN statistics: torch's defaults (mean 0, var 1) make MobileNetV2's output vanish."""
    import torch

    gen = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return module


def _mobilenet() -> Any:
    return _reinit_batchnorm(_hf("MobileNetV2Model", "MobileNetV2Config", "last_hidden_state")())


def _wrap(model: Any, output: str) -> Any:
    """A module returning one named output tensor of a transformers model."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> Any:
            return getattr(self.model(*args), output)

    return Wrapped()


ZOO: dict[str, ZooEntry] = {
    "bert-base": ZooEntry(_hf("BertModel", "BertConfig", "last_hidden_state"), _tokens(), "last_hidden_state"),
    "gpt2": ZooEntry(_hf("GPT2Model", "GPT2Config", "last_hidden_state"), _tokens(50257, with_mask=False), "last_hidden_state"),
    "vit-b16": ZooEntry(_hf("ViTModel", "ViTConfig", "last_hidden_state", add_pooling_layer=False), _pixels(), "last_hidden_state"),
    "resnet50": ZooEntry(_hf("ResNetModel", "ResNetConfig", "pooler_output"), _pixels(), "pooler_output"),
    "mobilenetv2": ZooEntry(_mobilenet, _pixels(), "last_hidden_state"),
    "distilbert": ZooEntry(_hf("DistilBertModel", "DistilBertConfig", "last_hidden_state"), _tokens(), "last_hidden_state"),
    "convnext": ZooEntry(_hf("ConvNextModel", "ConvNextConfig", "pooler_output"), _pixels(), "pooler_output"),
    "whisper-encoder": ZooEntry(
        lambda: _wrap(_hf_whisper_encoder(), "last_hidden_state").eval(), _features, "last_hidden_state"),
    # small variants for fast tests (same code paths, a fraction of the size)
    "bert-tiny": ZooEntry(_hf("BertModel", "BertConfig", "last_hidden_state", hidden_size=64, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=128), _tokens(), "last_hidden_state"),
    "resnet-tiny": ZooEntry(_hf("ResNetModel", "ResNetConfig", "pooler_output", embedding_size=16, hidden_sizes=[16, 32],
                                depths=[1, 1], layer_type="basic"), _pixels(64), "pooler_output"),
}


def _hf_whisper_encoder() -> Any:
    import torch
    import transformers

    torch.manual_seed(0)
    return transformers.WhisperModel(transformers.WhisperConfig()).get_encoder()


def torch_model(name: str) -> tuple[Any, dict[str, np.ndarray]]:
    """(module in eval mode, inputs by name as numpy arrays)."""
    entry = ZOO[name]
    return entry.build(), entry.inputs()


def inputs(name: str) -> dict[str, np.ndarray]:
    return ZOO[name].inputs()


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _versions() -> str:
    import torch
    import transformers

    return hashlib.sha1(f"{torch.__version__}-{transformers.__version__}-v1".encode()).hexdigest()[:8]


def onnx_model(name: str, exporter: str = "legacy") -> Path:
    """Path to `name` exported with the legacy (TorchScript) or dynamo ONNX exporter, cached."""
    assert exporter in ("legacy", "dynamo"), exporter
    path = CACHE / _versions() / f"{name}-{exporter}.onnx"
    with _locked(path):
        if not path.exists():
            _export(name, exporter, path)
    return path


def _export(name: str, exporter: str, path: Path) -> None:
    import torch

    model, feeds = torch_model(name)
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(model, args, str(tmp), input_names=list(feeds), output_names=[ZOO[name].output],
                              opset_version=17, dynamo=False)
        else:
            program = torch.onnx.export(model, args, input_names=list(feeds), output_names=[ZOO[name].output], dynamo=True)
            program.save(str(tmp))
    for extra in tmp.parent.glob(tmp.name + ".data"):
        extra.rename(path.with_name(path.name + ".data"))
    tmp.rename(path)


def reference_outputs(name: str) -> np.ndarray:
    """Eager PyTorch output for the zoo inputs (float32)."""
    import torch

    model, feeds = torch_model(name)
    with torch.no_grad():
        return model(*(torch.from_numpy(v) for v in feeds.values())).numpy()
