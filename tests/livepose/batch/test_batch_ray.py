"""`livepose batch --ray` on a local Ray cluster started here (127.0.0.1 only): the same JSONL as the
local executor, a worker killed mid-video, and an unreachable cluster named in one line."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from batch_clips import jsonl_lines, make_folder, status_records
from conftest import REPO
from livepose.cli import main

ray = pytest.importorskip("ray", reason="the Ray executor needs the cluster extra: pip install -e '.[cluster]'")
WORKERS = ["--workers", "2", "--threads-per-worker", "1", "--no-progress", "--no-fetch"]


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # one logical GPU: --gpus-per-worker is a Ray resource, testable without a GPU
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def models(r18_onnx, yolox_nano):
    return ["--pose-model", str(r18_onnx), "--detector", str(yolox_nano)]


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_cluster_is_one_line_naming_it_within_seconds(tmp_path, models):
    folder = make_folder(tmp_path, good=1, bad=False)
    address = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "livepose", "batch", str(folder), "--out", str(tmp_path / "o"),
                             "--ray", address, *models, "--no-progress"], env={**os.environ, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and address in lines[0] and "cannot connect" in lines[0], result.stderr
    assert time.monotonic() - started < 30  # python start-up included; Ray's own retries would take minutes


@pytest.mark.slow
def test_ray_gives_byte_identical_jsonl_to_the_local_executor(tmp_path, models, cluster):
    folder = make_folder(tmp_path, bad=True)
    assert main(["batch", str(folder), "--out", str(tmp_path / "local"), *models, *WORKERS]) == 3
    assert main(["batch", str(folder), "--out", str(tmp_path / "ray"), "--ray", *models, *WORKERS]) == 3
    for key in ("clip0", "sub/clip1", "clip2"):
        local, remote = (tmp_path / run / "jsonl" / f"{key}.jsonl" for run in ("local", "ray"))
        assert local.read_bytes() == remote.read_bytes() and local.stat().st_size > 0
    failed = {r["video"]: r["reason"] for r in status_records(tmp_path / "ray") if r["status"] == "failed"}
    assert set(failed) == {"corrupt", "notes"} and all("cannot be read as a video" in r for r in failed.values())


class WorkerKiller(threading.Thread):
    """Kills the first worker process seen writing a video (its scratch folder names its pid) once
    a few frames are in."""

    def __init__(self, scratch, lines=2):
        super().__init__(daemon=True)
        self.scratch, self.lines, self.killed, self.stop = Path(scratch), lines, None, threading.Event()

    def run(self):
        while not self.stop.is_set() and self.killed is None:
            for partial in self.scratch.glob("livepose-batch-*/.*partial*.jsonl"):  # the JSONL while it is written
                try:
                    if partial.read_text().count("\n") >= self.lines:
                        self.killed = int(partial.parent.name.rsplit("-", 1)[1])
                        os.kill(self.killed, signal.SIGKILL)
                        return
                except (OSError, ValueError):
                    continue
            time.sleep(0.05)


@pytest.mark.slow
def test_a_worker_killed_mid_video_is_replaced_and_every_video_completes(tmp_path, r18_onnx, yolox_nano, cluster):
    from livepose.batch.inputs import resolve_inputs
    from livepose.batch.ray_executor import RayExecutor
    from livepose.batch.run import run_batch
    from livepose.batch.worker import ModelFiles, WorkerSettings

    folder = make_folder(tmp_path, good=3, bad=False, frames=12)
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    models, settings = ModelFiles.of(r18_onnx, yolox_nano), WorkerSettings(threads=1)
    killer = WorkerKiller(scratch)
    killer.start()
    summary = run_batch(resolve_inputs([folder]), out, ["jsonl"], models, settings,
                        lambda _: RayExecutor(2, models, settings, scratch=str(scratch)))
    killer.stop.set()
    assert killer.killed is not None, "no worker was caught mid-video"
    assert sorted(summary.done) == ["clip0", "clip2", "sub/clip1"] and not summary.failed
    for key in summary.done:
        assert [r["frame"] for r in jsonl_lines(out / "jsonl" / f"{key}.jsonl")] == list(range(12))
    assert not list(out.rglob("*.partial*"))


def test_gpus_per_worker_is_a_ray_resource_a_worker_waits_for(tmp_path, r18_onnx, yolox_nano, cluster):
    from livepose.batch.inputs import resolve_inputs
    from livepose.batch.ray_executor import RayExecutor
    from livepose.batch.run import run_batch
    from livepose.batch.worker import ModelFiles, WorkerSettings

    folder = make_folder(tmp_path, good=2, bad=False, frames=2)
    models, settings, said = ModelFiles.of(r18_onnx, yolox_nano), WorkerSettings(threads=1), []
    executor = RayExecutor(2, models, settings, gpus=1, log=said.append, placement_timeout=5)
    summary = run_batch(resolve_inputs([folder]), tmp_path / "out", ["jsonl"], models, settings, lambda _: executor)
    assert sorted(summary.done) == ["clip0", "sub/clip1"]
    assert said == ["1 of 2 workers were not placed within 5 s (each needs 1 CPUs and 1 GPUs on one node)"]
    workers = [r["worker"] for r in status_records(tmp_path / "out") if r["status"] == "done"]
    assert [w["gpus"] for w in workers] == [["0"], ["0"]] and len({w["pid"] for w in workers}) == 1


def test_workers_that_cannot_open_the_models_say_why_once_and_take_no_videos(tmp_path, yolox_nano, cluster):
    from livepose.batch.inputs import resolve_inputs
    from livepose.batch.local import WorkersUnusable
    from livepose.batch.ray_executor import RayExecutor
    from livepose.batch.run import run_batch
    from livepose.batch.worker import ModelFiles, WorkerSettings

    folder = make_folder(tmp_path, good=1, bad=False, frames=2)
    wrong = ModelFiles.of(yolox_nano, yolox_nano)  # a detector given as the pose model (like an engine for another GPU)
    settings, said = WorkerSettings(threads=1), []
    with pytest.raises(WorkersUnusable, match="no Ray worker could start: .*yolox_nano"):
        run_batch(resolve_inputs([folder]), tmp_path / "out", ["jsonl"], wrong, settings,
                  lambda _: RayExecutor(1, wrong, settings, log=said.append))
    assert len(said) == 1 and "takes no videos" in said[0]
    assert not (tmp_path / "out" / "jsonl").exists()
