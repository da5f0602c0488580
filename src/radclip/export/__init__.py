"""ONNX and TorchScript export with parity checks against PyTorch."""
