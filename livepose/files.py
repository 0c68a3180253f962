"""File helpers shared by the runtime and train/: input and output checks, checksums and
all-or-nothing writes.

Everything a user keeps (videos, results, checkpoints, engines, ONNX files) is written to a
temporary name beside its target and renamed over it only when complete, so an interruption or a
failure never leaves a truncated file under the real name.
"""
import hashlib
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

CHUNK_BYTES = 1 << 20


class MediaError(ValueError):
    """An input or output (file, folder, camera, stream) cannot be used; the message names it."""


def check_readable_file(path, what="input"):
    """Raise MediaError unless `path` is an existing, non-empty, readable regular file."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{what} {path}: no such file")
    if path.is_dir():
        raise MediaError(f"{what} {path}: is a folder, expected a file")
    if path.stat().st_size == 0:
        raise MediaError(f"{what} {path}: file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{what} {path}: not readable (permission denied)")


def check_writable(path, what="output"):
    """Raise MediaError unless a file can be created at `path` (its folder exists and is writable)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise MediaError(f"{what} {path}: is a folder, expected a file name")
    if not folder.is_dir():
        raise MediaError(f"{what} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MediaError(f"{what} {path}: folder {folder} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise MediaError(f"{what} {path}: exists and is not writable")


def sha256_of(path):
    """Hex SHA-256 of a file, read in chunks (engines and checkpoints can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def signals_deferred():
    """Hold back SIGINT/SIGTERM until the block ends (main thread only), so that a Ctrl-C cannot
    land between finishing a file and moving it into place, or between two outputs of one frame.

    Python runs signal handlers in the main thread whichever thread the OS delivered the signal
    to, so masking the main thread alone (pthread_sigmask) would not hold them back while worker
    threads run; instead the handlers are swapped for one that records the signal, and the
    original handler gets it when the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda number, _frame: received.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            _deliver(received[0], previous[received[0]])


def _deliver(signum, handler):
    """Give a held-back signal to the handler that was in place when it arrived."""
    if callable(handler):
        handler(signum, None)
    elif handler in (signal.SIG_DFL, None):
        os.kill(os.getpid(), signum)  # the default action (terminate), now that the handler is back


def temporary_sibling(path, suffix=None):
    """A hidden temporary name beside `path`, keeping its extension (OpenCV picks the container by it)."""
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{suffix}")


def write_atomic(path, data):
    """Write bytes to `path` through a temporary sibling and os.replace: all or nothing.

    The folder is created when missing; the old file stays intact until the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    with signals_deferred():
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
