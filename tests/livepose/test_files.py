"""The shared checksum and all-or-nothing write helpers."""
import hashlib
import subprocess
import sys

import pytest

from conftest import REPO
from livepose.files import sha256_of, write_atomic


def test_sha256_of_matches_hashlib_across_chunk_boundaries(tmp_path):
    data = bytes(range(256)) * 9000  # > 2 chunks of 1 MiB
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


def test_write_atomic_replaces_and_creates_missing_folders(tmp_path):
    target = tmp_path / "new" / "folder" / "out.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    target.write_bytes(b"previous results")

    class Unwritable:
        """A buffer whose conversion fails part-way, as a disk-full or interrupted write would."""

        def __buffer__(self, flags):
            raise OSError("no space left on device (simulated)")

    with pytest.raises((OSError, TypeError)):
        write_atomic(target, Unwritable())
    assert target.read_bytes() == b"previous results"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


DEFERRED_CTRL_C = """
import os, signal, threading, time
from livepose.files import signals_deferred

# a thread started before the block keeps SIGINT unmasked: masking the main thread alone would let
# the kernel hand the signal to it, and Python would raise it in the main thread inside the block
stop = threading.Event()
bystander = threading.Thread(target=stop.wait)
bystander.start()
steps = []
try:
    with signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)  # time for the kernel to deliver it, and for Python to run a pending handler
        steps.append("block finished")
except KeyboardInterrupt:
    steps.append("interrupted")
finally:
    stop.set()
    bystander.join()
assert steps[-2:] == ["block finished", "interrupted"], steps[-2:]
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
print("ok")
"""


def test_ctrl_c_inside_a_deferred_block_arrives_after_it():
    # a fresh interpreter: a process-wide signal should not reach the other tests' library threads
    result = subprocess.run([sys.executable, "-c", DEFERRED_CTRL_C], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
