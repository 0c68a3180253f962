"""The shared checksum and all-or-nothing write helpers."""
import hashlib

import pytest

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


def test_ctrl_c_inside_a_deferred_block_arrives_after_it_even_from_another_thread():
    import os
    import signal
    import threading

    from livepose.files import signals_deferred

    # a thread started before the block keeps SIGINT unmasked, so the kernel may deliver to it
    go = threading.Event()
    sender = threading.Thread(target=lambda: (go.wait(), os.kill(os.getpid(), signal.SIGINT)))
    sender.start()
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            go.set()
            sender.join()
            for _ in range(1000):  # bytecode boundaries where Python would run a pending handler
                steps.append(1)
            steps.append("block finished")
    assert steps[-1] == "block finished"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
