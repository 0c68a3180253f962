"""TensorRTBackend, build_plan and the CUDA layer on a fake GPU (fake_gpu.py): our control flow only.

Every test runs twice, once on the cuda-python layer and once on the pycuda layer, against the
same fakes: threads, close() under the lock, fixed-batch padding, device selection, the timing
cache and the one-line errors for a driver too old for TensorRT's CUDA build.
"""
import threading
from pathlib import Path

import numpy as np
import pytest

from livepose.runtime.backends import BackendUnavailable
from livepose.tensorrt import build, cuda_layer
from livepose.tensorrt.sidecar import BatchProfile, EngineBuildError, EngineMeta, TensorSpec, write_sidecar
import fake_gpu
from tiny_pose_model import tiny_pose_meta, write_tiny_pose_onnx

LAYERS = ("cuda-python", "pycuda")


@pytest.fixture(params=LAYERS)
def gpu(request, monkeypatch):
    """(FakeGpu, the livepose.tensorrt.backend module imported against it with the layer under test)."""
    fake = fake_gpu.FakeGpu()
    backend = fake_gpu.install(monkeypatch, fake, request.param)
    assert backend._CUDA.name == request.param
    return fake, backend


def write_engine(folder, input_shape, max_batch=None):
    """A fake engine and its sidecar; returns the engine path."""
    plan = fake_gpu.fake_plan(input_shape, max_batch)
    engine = Path(folder) / "fake.engine"
    engine.write_bytes(plan)
    dynamic = input_shape[0] == -1
    meta = EngineMeta(
        kind="pose", engine_sha256=fake_gpu.plan_sha256(plan), source_onnx="fake.onnx", source_onnx_sha256="1" * 64,
        tensorrt_version=fake_gpu.TENSORRT_VERSION, gpu_name="NVIDIA Fake GPU", compute_capability="8.9",
        precision="f32", fp16_mode=None, profile=BatchProfile.for_max_batch(max_batch) if dynamic else None,
        input=TensorSpec("image", tuple(input_shape)), output=TensorSpec("heatmaps", (input_shape[0], 2, 4, 4)),
        onnx_metadata_props={"livepose": tiny_pose_meta().to_json()}, accuracy_checked=False,
        build_command="livepose build-engine --pose fake.onnx",
    )
    write_sidecar(meta, engine)
    return engine


def expected(batch):
    return batch[:, :2] * 2 + 1


def batch_of(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 4, 4)).astype(np.float32)


def in_thread(function):
    """Run `function` on a new thread; its result, or re-raise its exception here."""
    result = {}

    def target():
        try:
            result["value"] = function()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            result["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(20)
    if "error" in result:
        raise result["error"]
    return result.get("value")


# --- the CUDA layer itself -----------------------------------------------------------------------


def test_layer_copies_round_trip_on_a_worker_thread(gpu):
    fake, backend = gpu
    layer = backend._CUDA

    def round_trip():
        with layer.current(0):
            host = layer.pinned_empty(12, np.float32)
            back = layer.pinned_empty(12, np.float32)
            host[:] = np.arange(12, dtype=np.float32)
            ptr, stream = layer.device_alloc(host.nbytes), layer.stream_create()
            layer.copy_htod_async(ptr, host, stream)
            layer.copy_dtoh_async(back, ptr, stream)
            layer.synchronize(stream)
            copied = back.copy()
            layer.device_free(ptr)
            layer.pinned_free(host)
            layer.pinned_free(back)
            layer.stream_destroy(stream)
        return copied

    np.testing.assert_array_equal(in_thread(round_trip), np.arange(12, dtype=np.float32))
    assert fake.live() == 0 and fake.pushed_here() == 0


def test_layer_failure_names_the_call(gpu):
    fake, backend = gpu
    fake.failing["cudaMalloc"] = fake_gpu.CudaErr.cudaErrorMemoryAllocation
    with pytest.raises(cuda_layer.CudaError, match=r"(cudaMalloc|cuMemAlloc) failed"):
        with backend._CUDA.current(0):
            backend._CUDA.device_alloc(64)


def test_no_layer_says_what_to_install(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(__import__("sys").modules, name, None)
    with pytest.raises(ImportError, match=r'no CUDA Python layer loads.*livepose\[gpu\].*livepose\[gpu-cu12\].*gpu-pycuda'):
        cuda_layer.load()


# --- device, driver and install messages ---------------------------------------------------------


def test_device_info_and_a_missing_device(gpu):
    _, backend = gpu
    assert backend.device_info(1) == (fake_gpu.TENSORRT_VERSION, "NVIDIA Other GPU", "9.0")
    with pytest.raises(BackendUnavailable, match="CUDA device 5 does not exist: this machine has 2"):
        backend.device_info(5)


def test_driver_too_old_for_the_cuda_13_build_is_one_line(gpu, monkeypatch, tmp_path):
    fake, backend = gpu
    fake.driver_version, fake.builder_fails = 12020, True  # a 535-570 driver
    monkeypatch.setattr(backend, "tensorrt_cuda_build", lambda: "13")
    spec = _spec(tmp_path, write_tiny_pose_onnx(tmp_path / "tiny.onnx"))
    with pytest.raises(BackendUnavailable) as error:
        backend.build_plan(spec)
    message = str(error.value)
    assert "\n" not in message
    assert "CUDA initialization failure with error: 35" in message
    assert "driver supports CUDA 12.2" in message and "CUDA 13 build" in message and "580.65" in message
    assert 'pip install "livepose[gpu-cu12]"' in message
    with pytest.raises(BackendUnavailable, match=r"could not create its runtime.*CUDA 12\.2.*gpu-cu12"):
        backend.TensorRTBackend(write_engine(tmp_path, (-1, 3, 4, 4), 8))


def test_tensorrt_cuda_build_comes_from_the_wheel_name(gpu, monkeypatch):
    _, backend = gpu
    import importlib.metadata

    installed = {"tensorrt-cu12-libs": "10.13.3"}

    def version(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert backend.tensorrt_cuda_build() == "12"
    installed.clear()
    assert backend.tensorrt_cuda_build() is None


def test_out_of_memory_while_loading_is_one_line_and_frees_what_was_allocated(gpu, tmp_path):
    fake, backend = gpu
    engine = write_engine(tmp_path, (-1, 3, 4, 4), 8)
    fake.failing["cudaMalloc"] = fake_gpu.CudaErr.cudaErrorMemoryAllocation
    with pytest.raises(BackendUnavailable, match=r"CUDA failed.*(cudaMalloc|cuMemAlloc).*driver supports CUDA 13\.0"):
        backend.TensorRTBackend(engine)
    assert fake.live() == 0 and fake.pushed_here() == 0


# --- build_plan ----------------------------------------------------------------------------------


def _spec(tmp_path, onnx_path, strongly_typed=False):
    return build.BuildSpec(
        label="pose engine tiny.engine", onnx_path=onnx_path, input_name="image", sample_shape=(3, 64, 48),
        profile=BatchProfile.for_max_batch(8), fp16_builder_flag=not strongly_typed, strongly_typed=strongly_typed,
        workspace_bytes=1 << 20, timing_cache=tmp_path / "timing.cache",
    )


def test_build_plan_runs_on_the_device_asked_for(gpu, tmp_path):
    fake, backend = gpu
    spec = _spec(tmp_path, write_tiny_pose_onnx(tmp_path / "tiny.onnx"))
    backend.build_plan(spec, device=1)
    assert fake.builder_devices == [1]
    assert spec.timing_cache.read_bytes() == b"timing cache for NVIDIA Other GPU"
    assert fake.pushed_here() == 0


def test_rejected_timing_cache_does_not_leak_into_a_later_failure(gpu, tmp_path, caplog):
    fake, backend = gpu
    spec = _spec(tmp_path, write_tiny_pose_onnx(tmp_path / "tiny.onnx"))
    spec.timing_cache.write_bytes(b"timing cache for NVIDIA Other GPU")
    fake.build_fails = True
    with pytest.raises(EngineBuildError) as error:
        backend.build_plan(spec, device=0)
    assert "out of memory while building" in str(error.value)
    assert "timing cache" not in str(error.value)
    assert "different device (fake rejection)" in caplog.text  # reported once, as a warning


def test_strongly_typed_route_on_tensorrt_10_and_11(monkeypatch, tmp_path):
    """The FP16 route build-engine takes: builder flag on 10.x unless strongly typed is asked for; 11.x always."""
    onnx_path = write_tiny_pose_onnx(tmp_path / "tiny.onnx")
    for has_flag, force, strongly in ((True, False, False), (True, True, True), (False, False, True)):
        fake = fake_gpu.FakeGpu()
        backend = fake_gpu.install(monkeypatch, fake, "cuda-python", fp16_builder_flag=has_flag)
        toolchain = build.tensorrt_toolchain(device=0)
        assert backend.has_fp16_builder_flag() == has_flag
        out = tmp_path / f"out-{has_flag}-{force}"
        job = build.EngineJob(kind="pose", onnx_path=onnx_path, engine_path=out / "tiny.engine", fp16=True, max_batch=8,
                              workspace_gib=0.5, build_command="livepose build-engine", strongly_typed_fp16=force)
        meta = build.build_engine(job, toolchain)
        assert meta.fp16_mode == ("strongly-typed-onnx" if strongly else "builder-flag")
        assert (out / build.timing_cache_name(toolchain)).is_file()
        assert "nvidia-fake-gpu-sm8.9" in build.timing_cache_name(toolchain)


# --- TensorRTBackend -----------------------------------------------------------------------------


def test_backend_made_on_the_main_thread_runs_on_another(gpu, tmp_path):
    fake, backend = gpu
    engine = backend.TensorRTBackend(write_engine(tmp_path, (-1, 3, 4, 4), 8))
    assert engine.max_batch == 8 and engine.input_shape == (None, 3, 4, 4)
    batch = batch_of(5)
    np.testing.assert_allclose(in_thread(lambda: engine.run(batch)), expected(batch))
    np.testing.assert_allclose(engine.run(batch_of(11, 1)), expected(batch_of(11, 1)))  # 8 + 3
    in_thread(engine.close)
    assert fake.live() == 0 and fake.pushed_here() == 0
    engine.close()  # twice is safe
    with pytest.raises(ValueError, match="closed"):
        engine.run(batch)


def test_close_waits_for_a_running_call(gpu, tmp_path):
    fake, backend = gpu
    engine = backend.TensorRTBackend(write_engine(tmp_path, (-1, 3, 4, 4), 8))
    fake.execute_gate = threading.Event()
    batch = batch_of(3)
    results = {}
    runner = threading.Thread(target=lambda: results.setdefault("out", engine.run(batch)))
    runner.start()
    assert fake.executing.wait(10)
    closer = threading.Thread(target=engine.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive() and fake.live() > 0  # buffers still there while execute_async_v3 runs
    fake.execute_gate.set()
    runner.join(10)
    closer.join(10)
    np.testing.assert_allclose(results["out"], expected(batch))
    assert fake.live() == 0


@pytest.mark.parametrize("n", [1, 3, 4, 6])
def test_fixed_batch_engine_pads_and_returns_only_the_rows_given(gpu, tmp_path, n):
    _, backend = gpu
    with backend.TensorRTBackend(write_engine(tmp_path, (4, 3, 4, 4))) as engine:
        assert engine.max_batch == 4 and engine.input_shape == (None, 3, 4, 4)
        engine.run(batch_of(4, seed=9))  # fills the buffers: stale rows must not come back
        out = engine.run(batch_of(n))
    assert out.shape == (n, 2, 4, 4)
    np.testing.assert_allclose(out, expected(batch_of(n)))


def test_engine_run_failure_is_one_line(gpu, tmp_path):
    fake, backend = gpu
    with backend.TensorRTBackend(write_engine(tmp_path, (-1, 3, 4, 4), 8)) as engine:
        fake.failing["cudaMemcpyAsync"] = fake_gpu.CudaErr.cudaErrorInsufficientDriver
        with pytest.raises(BackendUnavailable, match=r"running the engine failed.*cudaErrorInsufficientDriver") as error:
            engine.run(batch_of(2))
        assert "\n" not in str(error.value)
        del fake.failing["cudaMemcpyAsync"]
        np.testing.assert_allclose(engine.run(batch_of(2)), expected(batch_of(2)))  # the lock was released


def test_gpu_machine_cuda_check_script(gpu, monkeypatch, capsys):
    """tests/gpu/cuda_layer_check.py (for a GPU machine without TensorRT), run here on the fake layers."""
    import importlib.util

    fake, backend = gpu
    spec = importlib.util.spec_from_file_location("cuda_layer_check", Path(__file__).parents[2] / "gpu" / "cuda_layer_check.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(script, "ELEMENTS", 1 << 12)
    assert script.main(backend._CUDA.name) == 0
    out = capsys.readouterr().out
    assert f"layer {backend._CUDA.name}: driver supports CUDA 13.0, 2 GPU(s)" in out and "OK, equal to numpy" in out
    assert fake.live() == 0
