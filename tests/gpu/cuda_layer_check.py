"""Check the CUDA layer on a real GPU without TensorRT: `python tests/gpu/cuda_layer_check.py [cuda-python|pycuda]`.

For a GPU machine that cannot carry TensorRT: allocates pinned and device buffers on the main
thread, then from 4 worker threads (each making the device current, as TensorRTBackend does)
copies host -> device -> host on its own stream, concurrently, and compares with numpy; frees
everything from another thread. Prints one line per check and exits 1 on the first mismatch.
"""
import sys
import threading
import time

import numpy as np

from livepose.tensorrt import cuda_layer

THREADS = 4
ELEMENTS = 1 << 22  # 16 MiB of float32 per buffer


def round_trip(layer, device, seed, results):
    with layer.current(device):
        host = layer.pinned_empty(ELEMENTS, np.float32)
        back = layer.pinned_empty(ELEMENTS, np.float32)
        data = np.random.default_rng(seed).standard_normal(ELEMENTS).astype(np.float32)
        host[:] = data
        ptr, stream = layer.device_alloc(host.nbytes), layer.stream_create()
        try:
            for _ in range(5):
                back[:] = 0
                layer.copy_htod_async(ptr, host, stream)
                layer.copy_dtoh_async(back, ptr, stream)
                layer.synchronize(stream)
                if not np.array_equal(back, data):
                    results[seed] = f"thread {seed}: copied data differs from numpy's"
                    return
            results[seed] = None
        finally:
            layer.stream_destroy(stream)
            layer.device_free(ptr)
            layer.pinned_free(host)
            layer.pinned_free(back)


def main(prefer=None, device=0):
    layer = cuda_layer.load(prefer)
    print(f"layer {layer.name}: driver supports CUDA {layer.driver_version()}, {layer.device_count()} GPU(s), "
          f"device {device}: {layer.device_properties(device)}")
    results = {}
    started = time.perf_counter()
    threads = [threading.Thread(target=round_trip, args=(layer, device, seed, results)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failures = [results.get(seed, f"thread {seed}: raised") for seed in range(THREADS) if results.get(seed, "x")]
    seconds = time.perf_counter() - started
    print(f"{THREADS} threads x 5 round trips of {ELEMENTS * 4 >> 20} MiB: "
          f"{'OK, equal to numpy' if not failures else '; '.join(failures)} ({seconds:.2f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
