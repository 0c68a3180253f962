"""The batch driver: decides what is left to do, hands it to an executor, and alone commits
outputs and writes the status file.

Outputs of video KEY: `DIR/jsonl/KEY.jsonl` (as `livepose video --json` writes it),
`DIR/parquet/KEY.parquet`, `DIR/video/KEY.mp4` (annotated). Workers write them under unique
temporary names; `commit` moves each into place only when the whole video is done, with Ctrl-C
held back, then the video's status line is appended. An interrupted run leaves complete outputs
and a status file that the next run continues from.
"""
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from livepose.batch.status import StatusLog, can_skip, input_identity
from livepose.batch.worker import OUTPUT_SUFFIXES, unique_name
from livepose.files import fsync_folder, signals_deferred

SCRATCH_DIR = ".partial"  # DIR/.partial/RUN/: workers' files until committed (same file system: commits are renames)


@dataclass
class BatchSummary:
    """What a run did: video keys per status, failures' reasons, total frames and seconds."""

    done: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0

    @property
    def ok(self):
        return not self.failed


def output_paths(out_dir, key, kinds):
    """{kind: final path} of one video's outputs."""
    return {kind: Path(out_dir) / kind / f"{key}{OUTPUT_SUFFIXES[kind]}" for kind in kinds}


def commit(temporary, final):
    """Move a complete temporary file to its final name (the one place a batch output appears),
    durably as files.py's protocol does: the file fsynced before the rename, the folder after it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    Path(temporary).replace(final)
    fsync_folder(final.parent)


def run_batch(inputs, out_dir, kinds, models, settings, make_executor, force=False, progress=None):
    """Process `inputs` (BatchInputs) into `out_dir`; returns BatchSummary.

    kinds: the outputs wanted ("jsonl", "parquet", "video"); models: ModelFiles; settings:
    WorkerSettings; make_executor(scratch) -> an executor, called only when something is left to
    do; progress(result) is called per finished video. Ctrl-C raises KeyboardInterrupt after the
    videos finished so far are committed and recorded.
    """
    out_dir = Path(out_dir)
    status, summary = StatusLog(out_dir), BatchSummary()
    previous = {} if force else status.done_records()
    fingerprint = {"models": sorted(models.sha256.values()), "settings": settings.result_settings()}
    status.start_run(models.described(), {**settings.result_settings(), "outputs": list(kinds), "force": force})
    jobs = {}
    for item in inputs:
        identity = input_identity(item)
        if can_skip(previous.get(item.key), identity, fingerprint, output_paths(out_dir, item.key, kinds)):
            status.video(item.key, item.source, "skipped")
            summary.skipped.append(item.key)
            if progress is not None:
                progress({"key": item.key, "status": "skipped"})
        else:
            jobs[item.key] = {"key": item.key, "source": item.source, "kinds": list(kinds), "identity": identity}
    if not jobs:
        return summary
    scratch = out_dir / SCRATCH_DIR / unique_name("run", "").strip(".")
    scratch.mkdir(parents=True)
    started = time.perf_counter()
    try:
        for result in make_executor(scratch).run(list(jobs.values())):
            _record(result, jobs[result["key"]], out_dir, scratch, status, summary, fingerprint)
            if progress is not None:
                progress(result)
    finally:
        summary.seconds = time.perf_counter() - started
        shutil.rmtree(scratch, ignore_errors=True)
        _remove_if_empty(scratch.parent)
    return summary


def _record(result, job, out_dir, scratch, status, summary, fingerprint):
    """Commit a finished video's outputs and append its status line (Ctrl-C held back meanwhile)."""
    key, source = job["key"], job["source"]
    with signals_deferred():
        if result["status"] != "done":
            status.video(key, source, "failed", reason=result["reason"])
            summary.failed[key] = result["reason"]
            return
        finals = output_paths(out_dir, key, job["kinds"])
        for kind, temporary in _temporaries(result, key, scratch).items():
            commit(temporary, finals[kind])
        extra = {"worker": result["worker"]} if "worker" in result else {}
        status.video(key, source, "done", frames=result["frames"], persons=result["persons"],
                     seconds=result["seconds"], identity=job["identity"], fingerprint=fingerprint, **extra,
                     outputs={kind: str(path.relative_to(out_dir)) for kind, path in finals.items()})
        summary.done.append(key)
        summary.frames += result["frames"]


def _temporaries(result, key, scratch):
    """{kind: temporary file}: the worker's own files, or bytes sent back by a remote worker
    written into this run's scratch first."""
    if "files" in result:
        return {kind: Path(path) for kind, path in result["files"].items()}
    written = {}
    for kind, data in result["data"].items():
        path = scratch / unique_name(key, OUTPUT_SUFFIXES[kind])
        path.write_bytes(data)
        written[kind] = path
    return written


def _remove_if_empty(folder):
    try:
        folder.rmdir()
    except OSError:
        pass
