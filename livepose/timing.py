"""Per-stage timing: every stage adds its seconds to the frame's `times` dict under its name."""
import time
from contextlib import contextmanager


@contextmanager
def timed(times, stage):
    """Add the seconds spent in the `with` block to times[stage]; nothing when `times` is None."""
    if times is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        times[stage] = times.get(stage, 0.0) + time.perf_counter() - start
