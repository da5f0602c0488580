"""Serving wrappers around loaded models (PyTorch or ONNX Runtime) and the micro-batcher."""
