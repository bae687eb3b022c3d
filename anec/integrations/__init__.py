"""Adapters that plug anec into other tools' entry points (onnx's backend API, torch.compile)."""
