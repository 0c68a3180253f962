"""File helpers shared by the runtime and train/: input and output checks, checksums and
all-or-nothing writes.

Everything a user keeps (videos, JSON lines, results, checkpoints, engines, ONNX files) goes
through one commit protocol (StagedFile, commit_outputs, write_atomic): a temporary beside its
target, flushed, fsynced and checked, then renamed over it and the folder fsynced. An
interruption, a kill or a full disk never leaves a truncated file under the real name, and an
existing file is replaced only by a complete one (README: "Exit codes and outputs").
"""
import errno
import glob
import hashlib
import os
import re
import secrets
import signal
import socket
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


# Temporaries are `.NAME.livepose-partial-HOST-PID-TOKEN.EXT` beside their target: the host and pid
# tell a later run on the same host whether the writer is still alive (else the file is its stale
# debris, removed by `remove_stale_temporaries`); the random token keeps two machines writing into
# one shared folder from ever picking the same name.
TEMPORARY_MARK = ".livepose-partial-"


def temporary_sibling(path, suffix=None):
    """A hidden temporary name beside `path`, unique across processes and hosts, keeping its
    extension (OpenCV picks the container by it)."""
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    return path.with_name(f".{path.stem}{TEMPORARY_MARK}{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def _host_tag():
    """This host's name as it appears in temporary names (no '-', so the name splits cleanly)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def _temporary_owner(temporary):
    """(host, pid) of one of our temporaries, else None."""
    match = re.search(re.escape(TEMPORARY_MARK) + r"(\w+)-(\d+)-[0-9a-f]{8}", temporary.name)
    return (match.group(1), int(match.group(2))) if match else None


def remove_stale_temporaries(path):
    """Remove temporaries of `path` left by a run on this host that no longer lives (SIGKILL, power
    loss); returns them. Those of another host, or of a live process, are left alone."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    host = _host_tag()
    removed = []
    for candidate in folder.glob(f".{glob.escape(path.stem)}{TEMPORARY_MARK}*"):
        owner = _temporary_owner(candidate)
        if owner is None or owner[0] != host or _alive(owner[1]):
            continue
        candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_folder(folder):
    """Make a rename inside `folder` durable (where the system allows opening a folder)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


class OutputError(OSError):
    """An output could not be written (a full disk, a folder that refuses files); the message names
    the output, not its temporary. An OSError, so callers catching write errors still do."""


def write_failure(what, path, error):
    """An OutputError naming the output and saying when the disk is full."""
    code = getattr(error, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        reason = f"the disk is full ({error.strerror})"
    elif code == errno.EFBIG:
        reason = f"the file reached the size limit of this system or process ({error.strerror})"
    else:
        reason = getattr(error, "strerror", None) or str(error)
    failure = OutputError(f"{what} {path}: cannot be written: {reason}; an existing {Path(path).name} is kept")
    failure.errno = getattr(error, "errno", None)
    return failure


class StagedFile:
    """One output on its way to `path` through the commit protocol (every writer uses it):

    1. written to `temporary` beside `path` (same folder, same file system, so the rename is atomic);
    2. `sync()`: flushed to the disk (fsync), after the writer has checked what it wrote;
    3. `commit()`: renamed over `path`, then the folder fsynced so the rename survives power loss;
    `discard()` removes the temporary instead, leaving an existing `path` untouched.
    """

    def __init__(self, path, what="output"):
        self.path, self.what = Path(path), what
        remove_stale_temporaries(self.path)
        self.temporary = temporary_sibling(self.path)

    def sync(self):
        try:
            handle = os.open(self.temporary, os.O_RDONLY)
            try:
                os.fsync(handle)
            finally:
                os.close(handle)
        except OSError as error:
            raise write_failure(self.what, self.path, error) from None

    def commit(self):
        os.replace(self.temporary, self.path)
        fsync_folder(self.path.parent if str(self.path.parent) else ".")

    def discard(self):
        self.temporary.unlink(missing_ok=True)


def close_quietly(handle):
    """Close a file given up on; a close error (a full disk) is moot, its temporary is removed anyway."""
    try:
        handle.close()
    except OSError:
        pass


class CommittedOutput:
    """Base of an output written through the commit protocol (JsonlWriter, VideoWriter, the MOT and
    PoseTrack writers). As a context manager it commits the file alone when the block ends normally
    or by Ctrl-C (every frame so far is in it) and discards it on any other error. Subclasses
    provide `staged`, `empty`, `finish()`, `abandon()` and `close()` (commit, idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None or issubclass(kind, KeyboardInterrupt):
            self.close()
        else:
            discard_outputs([self])


def commit_outputs(outputs):
    """Commit the outputs of one run together, in the order given.

    Each output has `staged` (a StagedFile), `finish()` (close, check and fsync; raises MediaError
    or OutputError naming it when its file is not complete, e.g. on a full disk) and `empty` (nothing to commit:
    an existing file stays). All are finished before the first rename, so a failure of any leaves
    every old output in place; the renames then follow in order, Ctrl-C held back. A crash between
    two renames (microseconds) leaves the earlier outputs new and the later ones old, with the
    later temporaries complete beside them (removed by the next run).
    """
    with signals_deferred():
        try:
            for output in outputs:
                output.finish()
        except BaseException:
            discard_outputs(outputs)
            raise
        for output in outputs:
            staged = getattr(output, "staged", None)  # None: a stream such as stdout
            if staged is not None and output.empty:
                staged.discard()
            elif staged is not None:
                staged.commit()


def discard_outputs(outputs):
    """Close the outputs and remove their temporaries: every existing file stays as it was."""
    for output in outputs:
        try:
            output.abandon()
        finally:
            if getattr(output, "staged", None) is not None:
                output.staged.discard()


@contextmanager
def outputs_committed(outputs):
    """Commit `outputs` (a list the block fills with opened outputs) together when the block ends
    normally or by Ctrl-C (every frame so far is in every output), discard them on any other error."""
    try:
        yield outputs
    except KeyboardInterrupt:
        commit_outputs(outputs)
        raise
    except BaseException:
        discard_outputs(outputs)
        raise
    commit_outputs(outputs)


def write_atomic(path, data, what="output"):
    """Write bytes to `path` through the commit protocol (a StagedFile): all or nothing.

    The folder is created when missing; the old file stays intact until the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = StagedFile(path, what)
    with signals_deferred():
        try:
            with open(staged.temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            staged.commit()
        except OSError as error:
            staged.discard()
            raise write_failure(what, path, error) from None
        except BaseException:
            staged.discard()
            raise
