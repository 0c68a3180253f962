"""pytest plugin: run tests/gpu on the fake GPU (fake_gpu.py), with paddle made unimportable.

Used by test_gpu_material.py: `python -m pytest -m gpu tests/gpu -p fake_gpu_plugin`. Engines
"built" here run their ONNX on ONNX Runtime, so the suite's own assertions are checked. Only the
`livepose video` subprocess is deselected: a new process would not have the fakes.
LIVEPOSE_FAKE_CUDA picks the CUDA layer (cuda-python or pycuda), LIVEPOSE_FAKE_TRT_FP16_FLAG=0
fakes TensorRT 11 (no FP16 builder flag).
"""
import os
import sys

import fake_gpu


def pytest_configure(config):
    sys.modules["paddle"] = None  # `import paddle` raises ImportError from now on
    gpu = fake_gpu.FakeGpu()
    gpu.onnx_plans = True
    fake_gpu.install_modules(gpu, os.environ.get("LIVEPOSE_FAKE_CUDA", "cuda-python"),
                             os.environ.get("LIVEPOSE_FAKE_TRT_FP16_FLAG", "1") == "1",
                             lambda mapping, name, module: mapping.__setitem__(name, module))


def pytest_collection_modifyitems(config, items):
    kept = [item for item in items if "livepose_video" not in item.name]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
