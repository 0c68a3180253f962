"""A fake GPU for the CPU tests: fake `tensorrt`, `cuda.bindings.runtime` (cuda-python) and `pycuda.driver`.

"Device memory" is host memory owned by FakeGpu, so copies are real byte copies (ctypes.memmove) and
an engine's output can be checked. The fakes are strict where the real stack is fragile: memory,
copies and execution need a device current on the calling thread (cudaSetDevice, or a pycuda
context pushed on it), freed pointers are forgotten, and the failures seen on real machines (CUDA
error 35 and TypeError from trt.Builder on a too-old driver, out of memory) can be switched on.
The fake engine computes output = input[:, :2] * 2 + 1 (N, 2, H, W) from a JSON "plan".
"""
import ctypes
import enum
import hashlib
import json
import sys
import threading
import types
from pathlib import Path

import numpy as np

TENSORRT_VERSION = "10.8.0.43"
DEVICES = (("NVIDIA Fake GPU", 8, 9), ("NVIDIA Other GPU", 9, 0))


class CudaErr(enum.Enum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorInvalidDevice = 101


class MemcpyKind(enum.Enum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class FakeGpu:
    """The state the three fake modules share."""

    def __init__(self, driver_version=13000):
        self.driver_version = driver_version
        self.device_memory = {}     # ptr -> numpy buffer kept alive
        self.pinned = {}
        self.failing = {}           # call name -> CudaErr to return
        self.builder_fails = False  # trt.Builder as on a driver too old for TensorRT's CUDA
        self.build_fails = False
        self.builder_devices = []   # the current device when each Builder was made
        self.execute_gate = None    # a threading.Event execute_async_v3 waits on
        self.onnx_plans = False     # built engines run their ONNX on ONNX Runtime (the GPU suite on fakes)
        self.executing = threading.Event()
        self._local = threading.local()
        self.lock = threading.Lock()

    # --- which device is current on this thread ---------------------------------------------
    def current_device(self):
        stack = getattr(self._local, "stack", [])
        return stack[-1] if stack else getattr(self._local, "device", None)

    def require_current(self, what):
        if self.current_device() is None:
            raise AssertionError(f"{what} on thread {threading.current_thread().name} with no CUDA device current")

    def push(self, device):
        self._local.stack = getattr(self._local, "stack", []) + [device]

    def pop(self):
        stack = getattr(self._local, "stack", [])
        if not stack:
            raise AssertionError("pycuda Context.pop() with no context pushed on this thread")
        self._local.stack = stack[:-1]

    def pushed_here(self):
        return len(getattr(self._local, "stack", []))

    def set_device(self, device):
        self._local.device = device

    # --- memory ------------------------------------------------------------------------------
    def alloc(self, table, nbytes):
        buffer = np.zeros(max(nbytes, 1), np.uint8)
        with self.lock:
            table[buffer.ctypes.data] = buffer
        return buffer.ctypes.data

    def free(self, table, ptr):
        with self.lock:
            if ptr not in table:
                raise AssertionError(f"free of unknown pointer {ptr:#x}")
            del table[ptr]

    def copy(self, dst, src, nbytes, what):
        self.require_current(what)
        ctypes.memmove(dst, src, nbytes)

    def live(self):
        return len(self.device_memory) + len(self.pinned)


# ------------------------------------------------------------------------------ cuda-python


def cudart_module(gpu):
    rt = types.ModuleType("cuda.bindings.runtime")
    rt.cudaError_t, rt.cudaMemcpyKind = CudaErr, MemcpyKind
    ok = CudaErr.cudaSuccess

    def call(name, body):
        def wrapped(*args):
            if name in gpu.failing:
                return (gpu.failing[name], None)
            return body(*args)
        setattr(rt, name, wrapped)

    def properties(device):
        if device >= len(DEVICES):
            return (CudaErr.cudaErrorInvalidDevice, None)
        name, major, minor = DEVICES[device]
        return (ok, types.SimpleNamespace(name=name.encode() + b"\0" * 8, major=major, minor=minor))

    def malloc(nbytes):
        gpu.require_current("cudaMalloc")
        return (ok, gpu.alloc(gpu.device_memory, nbytes))

    def set_device(device):
        if device >= len(DEVICES):
            return (CudaErr.cudaErrorInvalidDevice,)
        gpu.set_device(device)
        return (ok,)

    call("cudaGetDeviceCount", lambda: (ok, len(DEVICES)))
    call("cudaDriverGetVersion", lambda: (ok, gpu.driver_version))
    call("cudaGetDeviceProperties", properties)
    call("cudaSetDevice", set_device)
    call("cudaMalloc", malloc)
    call("cudaFree", lambda ptr: (gpu.free(gpu.device_memory, ptr), ok)[1:])
    call("cudaMallocHost", lambda nbytes: (ok, gpu.alloc(gpu.pinned, nbytes)))
    call("cudaFreeHost", lambda ptr: (gpu.free(gpu.pinned, ptr), ok)[1:])
    call("cudaStreamCreate", lambda: (ok, FakeStream()))
    call("cudaStreamDestroy", lambda stream: (ok,))
    call("cudaStreamSynchronize", lambda stream: (gpu.require_current("cudaStreamSynchronize"), ok)[1:])
    call("cudaMemcpyAsync", lambda dst, src, n, kind, stream: (gpu.copy(dst, src, n, "cudaMemcpyAsync"), ok)[1:])
    return rt


class FakeStream:
    _next = 0x1000

    def __init__(self):
        FakeStream._next += 16
        self.handle = FakeStream._next

    def __int__(self):
        return self.handle


# ------------------------------------------------------------------------------ pycuda


def pycuda_module(gpu):
    driver = types.ModuleType("pycuda.driver")

    class Error(Exception):
        pass

    class MemoryError_(Error):
        pass

    driver.Error, driver.MemoryError = Error, MemoryError_
    driver.init = lambda: None
    driver.get_driver_version = lambda: gpu.driver_version

    class Context:
        def __init__(self, device):
            self.device = device

        def push(self):
            gpu.push(self.device)

        @staticmethod
        def pop():
            gpu.pop()

    class Device:
        def __init__(self, ordinal):
            if ordinal >= len(DEVICES):
                raise Error("cuDeviceGet failed: invalid device ordinal")
            self.ordinal = ordinal

        @staticmethod
        def count():
            return len(DEVICES)

        def name(self):
            return DEVICES[self.ordinal][0]

        def compute_capability(self):
            return DEVICES[self.ordinal][1:]

        def retain_primary_context(self):
            return Context(self.ordinal)

    class DeviceAllocation:
        def __init__(self, nbytes):
            gpu.require_current("cuMemAlloc")
            if "cudaMalloc" in gpu.failing:
                raise MemoryError_("cuMemAlloc failed: out of memory")
            self.ptr = gpu.alloc(gpu.device_memory, nbytes)

        def __int__(self):
            return self.ptr

        def free(self):
            gpu.require_current("cuMemFree")
            gpu.free(gpu.device_memory, self.ptr)

    class HostAllocation(bytearray):
        def free(self):
            gpu.free(gpu.pinned, self.ptr)

    def pagelocked_empty(count, dtype):
        host = HostAllocation(count * np.dtype(dtype).itemsize)
        array = np.ndarray((count,), dtype, buffer=host)
        host.ptr = array.ctypes.data
        gpu.pinned[host.ptr] = host
        return array

    class Stream:
        def __init__(self):
            self.handle = FakeStream().handle

        def synchronize(self):
            gpu.require_current("cuStreamSynchronize")

    driver.Context, driver.Device, driver.Stream = Context, Device, Stream
    driver.mem_alloc = DeviceAllocation
    driver.pagelocked_empty = pagelocked_empty
    def copy(dst, src, nbytes, what):
        if "cudaMemcpyAsync" in gpu.failing:
            raise Error(f"{what} failed: {gpu.failing['cudaMemcpyAsync'].name}")
        gpu.copy(dst, src, nbytes, what)

    driver.memcpy_htod_async = lambda dst, src, stream: copy(int(dst), src.ctypes.data, src.nbytes, "cuMemcpyHtoDAsync")
    driver.memcpy_dtoh_async = lambda dst, src, stream: copy(dst.ctypes.data, int(src), dst.nbytes, "cuMemcpyDtoHAsync")
    return driver


# ------------------------------------------------------------------------------ tensorrt


def fake_plan(input_shape, max_batch=None):
    """The bytes of a fake engine with input `image` of `input_shape` (-1 batch: profile 1..max_batch)."""
    return json.dumps({"input": list(input_shape), "max_batch": max_batch}).encode()


def plan_sha256(plan):
    return hashlib.sha256(plan).hexdigest()


class _Severity(enum.IntEnum):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)


def tensorrt_module(gpu, fp16_builder_flag=True):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = TENSORRT_VERSION
    trt.float32, trt.float16 = "float32", "float16"

    class ILogger:
        Severity = _Severity

        def __init__(self):
            pass

    class IProgressMonitor:
        def __init__(self):
            pass

    trt.ILogger, trt.IProgressMonitor = ILogger, IProgressMonitor
    trt.BuilderFlag = types.SimpleNamespace(**({"FP16": 0} if fp16_builder_flag else {}))
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    trt.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.Builder = lambda logger: _Builder(gpu, logger)
    trt.Runtime = lambda logger: _Runtime(gpu, logger)
    trt.OnnxParser = _OnnxParser
    trt.gpu = gpu
    return trt


def _factory_check(gpu, logger):
    if gpu.builder_fails:
        logger.log(ILOG_ERROR, "CUDA initialization failure with error: 35")
        raise TypeError("pybind11::init(): factory function returned nullptr")


ILOG_ERROR = 1


class _Builder:
    def __init__(self, gpu, logger):
        _factory_check(gpu, logger)
        gpu.builder_devices.append(gpu.current_device())
        self.gpu, self.logger = gpu, logger

    def create_network(self, flags):
        return types.SimpleNamespace(flags=flags, onnx=None)

    def create_builder_config(self):
        return _Config(self.gpu, self.logger)

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        if self.gpu.build_fails:
            self.logger.log(ILOG_ERROR, "out of memory while building (fake)")
            return None
        config.built = True
        max_batch = config.profiles[0].shapes[2][0] if config.profiles else None
        if self.gpu.onnx_plans:
            return json.dumps({"onnx": True, "max_batch": max_batch or 1}).encode() + b"\n" + Path(network.onnx).read_bytes()
        shape = [-1, *config.profiles[0].shapes[0][1:]] if config.profiles else [1, 3, 4, 4]
        return fake_plan(shape, max_batch)


class _Profile:
    def set_shape(self, name, *shapes):
        self.name, self.shapes = name, shapes


class _Config:
    def __init__(self, gpu, logger):
        self.gpu, self.logger = gpu, logger
        self.flags, self.profiles, self.cache = [], [], None
        self.progress_monitor = None

    def set_memory_pool_limit(self, pool, size):
        self.workspace = size

    def set_flag(self, flag):
        self.flags.append(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)

    def create_timing_cache(self, data):
        return types.SimpleNamespace(data=bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        mine = self._cache_bytes()
        if cache.data and cache.data != mine:
            self.logger.log(ILOG_ERROR, "timing cache was built for a different device (fake rejection)")
            return False
        self.cache = cache
        return True

    def _cache_bytes(self):
        return f"timing cache for {DEVICES[self.gpu.current_device() or 0][0]}".encode()

    def get_timing_cache(self):
        return types.SimpleNamespace(serialize=lambda: self._cache_bytes())


class _OnnxParser:
    def __init__(self, network, logger):
        self.network, self.num_errors = network, 0

    def parse_from_file(self, path):
        self.network.onnx = path
        return True


class _Runtime:
    def __init__(self, gpu, logger):
        _factory_check(gpu, logger)
        self.gpu = gpu

    def deserialize_cuda_engine(self, data):
        header, _, onnx_bytes = bytes(data).partition(b"\n")
        try:
            plan = json.loads(header)
        except ValueError:
            return None
        if plan.get("onnx"):
            return _onnx_engine(self.gpu, onnx_bytes, plan["max_batch"])
        shape = tuple(plan["input"])
        return _Engine(self.gpu, ("image", "heatmaps"), shape, (2, *shape[2:]), plan["max_batch"],
                       lambda x: x[:, :2] * 2 + 1)


def _onnx_engine(gpu, onnx_bytes, max_batch):
    """An engine that runs the ONNX it was "built" from on ONNX Runtime (for the GPU suite on fakes)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()

    def dims(shape):
        return tuple(d if isinstance(d, int) else -1 for d in shape)

    return _Engine(gpu, (inp.name, out.name), dims(inp.shape), dims(out.shape)[1:], max_batch,
                   lambda x: session.run([out.name], {inp.name: x})[0])


class _Engine:
    num_io_tensors = 2

    def __init__(self, gpu, names, input_shape, output_rest, max_batch, compute):
        self.gpu, self.names, self.input_shape, self.max_batch = gpu, names, input_shape, max_batch
        self.output_rest, self.compute = output_rest, compute

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return "input" if name == self.names[0] else "output"

    def get_tensor_dtype(self, name):
        return "float32"

    def get_tensor_shape(self, name):
        return self.input_shape if name == self.names[0] else (self.input_shape[0], *self.output_rest)

    def get_tensor_profile_shape(self, name, index):
        rest = self.input_shape[1:]
        return [(1, *rest), (min(8, self.max_batch), *rest), (self.max_batch, *rest)]

    def create_execution_context(self):
        return _ExecutionContext(self)


def _float_view(ptr, shape):
    count = int(np.prod(shape))
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), (count,)).reshape(shape)


class _ExecutionContext:
    def __init__(self, engine):
        self.engine, self.gpu = engine, engine.gpu
        self.shape = engine.input_shape if engine.input_shape[0] != -1 else None
        self.addresses = {}

    def set_input_shape(self, name, shape):
        if not 1 <= shape[0] <= self.engine.max_batch:
            return False
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.shape if name == self.engine.names[0] else (self.shape[0], *self.engine.output_rest)

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream_handle):
        self.gpu.require_current("execute_async_v3")
        self.gpu.executing.set()
        if self.gpu.execute_gate is not None:
            self.gpu.execute_gate.wait(10)
        x = _float_view(self.addresses[self.engine.names[0]], self.shape).copy()
        out_name = self.engine.names[1]
        _float_view(self.addresses[out_name], self.get_tensor_shape(out_name))[...] = self.engine.compute(x)
        return True


def install(monkeypatch, gpu, layer, fp16_builder_flag=True):
    """Put the fake tensorrt and CUDA `layer` ("cuda-python" or "pycuda") in sys.modules; returns a
    freshly imported livepose.tensorrt.backend bound to them (all undone after the test)."""
    import importlib

    import livepose.tensorrt

    install_modules(gpu, layer, fp16_builder_flag, monkeypatch.setitem)
    monkeypatch.setitem(sys.modules, "livepose.tensorrt.backend", None)
    del sys.modules["livepose.tensorrt.backend"]
    monkeypatch.setattr(livepose.tensorrt, "backend", None, raising=False)
    return importlib.import_module("livepose.tensorrt.backend")


def install_modules(gpu, layer, fp16_builder_flag, setitem):
    """The fake modules into sys.modules through `setitem(mapping, name, module)`."""
    setitem(sys.modules, "tensorrt", tensorrt_module(gpu, fp16_builder_flag))
    if layer == "cuda-python":
        cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
        bindings.runtime = cudart_module(gpu)
        for name, module in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", bindings.runtime)):
            setitem(sys.modules, name, module)
        setitem(sys.modules, "pycuda.driver", None)
    else:
        pycuda = types.ModuleType("pycuda")
        pycuda.driver = pycuda_module(gpu)
        for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
            setitem(sys.modules, name, None)  # None in sys.modules: that import fails
        setitem(sys.modules, "pycuda", pycuda)
        setitem(sys.modules, "pycuda.driver", pycuda.driver)
