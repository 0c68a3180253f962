"""The shared checksum and all-or-nothing write helpers."""
import hashlib
import os
import socket
import subprocess
import sys

import pytest

from conftest import REPO
from livepose.files import (
    MediaError,
    StagedFile,
    commit_outputs,
    remove_stale_temporaries,
    sha256_of,
    temporary_sibling,
    write_atomic,
)


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


def test_temporary_names_are_unique_hidden_and_keep_the_extension(tmp_path):
    names = {temporary_sibling(tmp_path / "out.mp4").name for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith(".out.livepose-partial-") and n.endswith(".mp4") and f"-{os.getpid()}-" in n for n in names)


def test_stale_temporaries_of_dead_runs_on_this_host_are_removed_and_no_others(tmp_path):
    target = tmp_path / "out.mp4"
    host = temporary_sibling(target).name.split("-partial-")[1].rsplit("-", 2)[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    names = {
        "dead": f".out.livepose-partial-{host}-{dead_pid}-0123abcd.mp4",
        "alive": f".out.livepose-partial-{host}-{os.getpid()}-0123abcd.mp4",
        "other host": f".out.livepose-partial-not{host}-{dead_pid}-0123abcd.mp4",
        "other target": f".other.livepose-partial-{host}-{dead_pid}-0123abcd.mp4",
        "not ours": ".out.partial-123.mp4",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in remove_stale_temporaries(target)] == [names["dead"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in names.items() if k != "dead")
    assert socket.gethostname()  # the host part comes from it


class Output:
    """A minimal output for commit_outputs: a StagedFile holding `data`, whose check can fail."""

    def __init__(self, path, data, check_fails=False):
        self.staged, self.data, self.check_fails, self.empty = StagedFile(path), data, check_fails, False
        self.staged.temporary.write_bytes(data)

    def finish(self):
        if self.check_fails:
            raise MediaError(f"output {self.staged.path}: cannot be written: the disk is full")
        self.staged.sync()

    def abandon(self):
        pass


def test_outputs_are_committed_together_or_not_at_all(tmp_path):
    first, second = tmp_path / "p.jsonl", tmp_path / "o.mp4"
    first.write_bytes(b"old poses")
    second.write_bytes(b"old video")
    with pytest.raises(MediaError, match="o.mp4: cannot be written: the disk is full"):
        commit_outputs([Output(first, b"new poses"), Output(second, b"new video", check_fails=True)])
    assert (first.read_bytes(), second.read_bytes()) == (b"old poses", b"old video")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4", "p.jsonl"]
    commit_outputs([Output(first, b"new poses"), Output(second, b"new video")])
    assert (first.read_bytes(), second.read_bytes()) == (b"new poses", b"new video")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4", "p.jsonl"]
