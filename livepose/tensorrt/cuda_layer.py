"""The few CUDA calls the TensorRT backend needs, from cuda-python (default) or pycuda.

TensorRT runs on the device's primary context (the CUDA runtime API's), so a thread only has to
make the device current before it touches buffers or enqueues work. Two implementations of one
small interface: `CudaPython` (cuda-python's `cuda.bindings.runtime`, as NVIDIA's TensorRT samples
use; a binary wheel) and `PyCuda` (pycuda, compiled against the CUDA toolkit). `load()` picks the
first that imports. This is the only file that imports either.

Interface (ints are device pointers; `stream` is the object `stream_create` returned):
  device_count() driver_version() device_properties(d) -> (name, "major.minor")
  current(d): a context manager making device d current on the calling thread
  device_alloc(nbytes) -> int, device_free(ptr); pinned_empty(count, dtype) -> array, pinned_free(array)
  stream_create(), stream_handle(stream) -> int, stream_destroy(stream), synchronize(stream)
  copy_htod_async(ptr, host, stream), copy_dtoh_async(host, ptr, stream)
Every failure is a CudaError naming the call and CUDA's error name.
"""
import contextlib
import ctypes
import importlib

import numpy as np

INSTALL_CUDA_PYTHON = 'pip install "livepose[gpu]" (cuda-python; with a CUDA 12 driver "livepose[gpu-cu12]")'


class CudaError(RuntimeError):
    """A CUDA call failed; `name` is CUDA's error name (e.g. cudaErrorInsufficientDriver)."""

    def __init__(self, call, name, detail=""):
        self.call, self.name = call, name
        super().__init__(f"{call} failed: {name}{f' ({detail})' if detail else ''}")


class CudaPython:
    """cuda-python's runtime API (cudaMalloc, cudaMemcpyAsync, cudaStreamCreate, cudaSetDevice)."""

    name = "cuda-python"

    def __init__(self, runtime):
        self._rt = runtime

    def _call(self, name, *args):
        result = getattr(self._rt, name)(*args)
        error, values = result[0], result[1:]
        if error != self._rt.cudaError_t.cudaSuccess:
            raise CudaError(name, getattr(error, "name", str(error)))
        return values[0] if len(values) == 1 else (values or None)

    def device_count(self):
        return self._call("cudaGetDeviceCount")

    def driver_version(self):
        """The CUDA version the installed driver supports, e.g. "12.2" (the driver reports 12020)."""
        return _cuda_version_text(self._call("cudaDriverGetVersion"))

    def device_properties(self, device):
        props = self._call("cudaGetDeviceProperties", device)
        name = props.name.split(b"\0", 1)[0].decode() if isinstance(props.name, bytes) else str(props.name)
        return name, f"{props.major}.{props.minor}"

    @contextlib.contextmanager
    def current(self, device):
        self._call("cudaSetDevice", device)  # the runtime API needs nothing undone afterwards
        yield

    def device_alloc(self, nbytes):
        return int(self._call("cudaMalloc", nbytes))

    def device_free(self, ptr):
        self._call("cudaFree", ptr)

    def pinned_empty(self, count, dtype):
        dtype = np.dtype(dtype)
        ptr = int(self._call("cudaMallocHost", count * dtype.itemsize))
        pointer = ctypes.cast(ptr, ctypes.POINTER(np.ctypeslib.as_ctypes_type(dtype)))
        return np.ctypeslib.as_array(pointer, (count,))

    def pinned_free(self, array):
        self._call("cudaFreeHost", array.ctypes.data)

    def stream_create(self):
        return self._call("cudaStreamCreate")

    def stream_handle(self, stream):
        try:
            return int(stream)
        except TypeError:  # a cudaStream_t without __int__: its pointer value
            return int(stream.getPtr())

    def stream_destroy(self, stream):
        self._call("cudaStreamDestroy", stream)

    def synchronize(self, stream):
        self._call("cudaStreamSynchronize", stream)

    def copy_htod_async(self, ptr, host, stream):
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", ptr, host.ctypes.data, host.nbytes, kind, stream)

    def copy_dtoh_async(self, host, ptr, stream):
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", host.ctypes.data, ptr, host.nbytes, kind, stream)


class PyCuda:
    """pycuda's driver API on the device's primary context, pushed only for the duration of `current`."""

    name = "pycuda"

    def __init__(self, driver):
        self._cuda = driver
        self._allocations = {}  # device pointer -> pycuda's DeviceAllocation (freeing needs the object)
        self._contexts = {}

    @contextlib.contextmanager
    def _errors(self, call):
        try:
            yield
        except self._cuda.Error as error:
            raise CudaError(call, type(error).__name__, str(error)) from None

    def device_count(self):
        with self._errors("cuInit"):
            self._cuda.init()
            return self._cuda.Device.count()

    def driver_version(self):
        with self._errors("cuDriverGetVersion"):
            return _cuda_version_text(self._cuda.get_driver_version())

    def device_properties(self, device):
        with self._errors("cuDeviceGet"):
            gpu = self._cuda.Device(device)
            major, minor = gpu.compute_capability()
            return gpu.name(), f"{major}.{minor}"

    @contextlib.contextmanager
    def current(self, device):
        with self._errors("cuDevicePrimaryCtxRetain"):
            if device not in self._contexts:
                self._contexts[device] = self._cuda.Device(device).retain_primary_context()
            context = self._contexts[device]
            context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()  # pushed and popped on this thread: nothing is left current

    def device_alloc(self, nbytes):
        with self._errors("cuMemAlloc"):
            allocation = self._cuda.mem_alloc(nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def device_free(self, ptr):
        with self._errors("cuMemFree"):
            self._allocations.pop(ptr).free()

    def pinned_empty(self, count, dtype):
        with self._errors("cuMemHostAlloc"):
            return self._cuda.pagelocked_empty(count, dtype)

    def pinned_free(self, array):
        with self._errors("cuMemFreeHost"):
            array.base.free()

    def stream_create(self):
        with self._errors("cuStreamCreate"):
            return self._cuda.Stream()

    def stream_handle(self, stream):
        return int(stream.handle)

    def stream_destroy(self, stream):
        pass  # pycuda destroys the stream with its object

    def synchronize(self, stream):
        with self._errors("cuStreamSynchronize"):
            stream.synchronize()

    def copy_htod_async(self, ptr, host, stream):
        with self._errors("cuMemcpyHtoDAsync"):
            self._cuda.memcpy_htod_async(ptr, host, stream)

    def copy_dtoh_async(self, host, ptr, stream):
        with self._errors("cuMemcpyDtoHAsync"):
            self._cuda.memcpy_dtoh_async(host, ptr, stream)


def _cuda_version_text(version):
    """12020 -> "12.2" (CUDA encodes major * 1000 + minor * 10)."""
    return f"{version // 1000}.{version % 1000 // 10}"


# (module to import, implementation): cuda-python 12.6+ and 13 have cuda.bindings.runtime; 13 dropped `cuda.cudart`
_CANDIDATES = (("cuda.bindings.runtime", CudaPython), ("cuda.cudart", CudaPython), ("pycuda.driver", PyCuda))


def load(prefer=None):
    """The first CUDA layer that imports (cuda-python, then pycuda); `prefer` ("cuda-python" or
    "pycuda") tries only that one. ImportError saying what to install when none does."""
    failures = []
    for module_name, implementation in _CANDIDATES:
        if prefer is not None and implementation.name != prefer:
            continue
        try:
            return implementation(importlib.import_module(module_name))
        except (ImportError, OSError) as error:  # OSError: the package is there but a CUDA library does not load
            failures.append(f"{module_name}: {error}")
    raise ImportError(f"no CUDA Python layer loads ({'; '.join(failures)}); {INSTALL_CUDA_PYTHON}, "
                      'or "livepose[gpu-pycuda]" for pycuda (needs the CUDA toolkit to compile)')
