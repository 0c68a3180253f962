"""TensorRT: building engines from ONNX (with the FP16 conversion and the accuracy check against
ONNX Runtime FP32), the engine sidecar, and the TensorRT backend. Only backend.py imports TensorRT."""
