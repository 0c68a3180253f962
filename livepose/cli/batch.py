"""`livepose batch INPUTS... --out DIR`: many videos, on local worker processes or a Ray cluster."""
import os
import sys
from pathlib import Path

from livepose.cli.common import Interrupted, add_detect_every, add_model_arguments, check_thresholds

NAME = "batch"
HELP = "process many videos (folders, globs, manifests) locally or on a Ray cluster; resumable"
DESCRIPTION = (
    "Poses of every video in INPUTS (video files, folders searched recursively, glob patterns, .txt/.csv manifests) "
    "into DIR/jsonl/KEY.jsonl (+ DIR/parquet/KEY.parquet with --parquet, DIR/video/KEY.mp4 with --video), KEY being "
    "the video's path relative to its input root. DIR/batch.jsonl records each video's status; running the same "
    "command again skips videos already done. Exit codes: 0 every video done or skipped, 3 one or more videos "
    "failed (the summary names them), 2 a user error, 130 interrupted."
)
EXIT_VIDEOS_FAILED = 3
MAX_DEFAULT_THREADS = 4  # inference threads a worker uses by default; more workers beyond that


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders, glob patterns or manifests")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--parquet", action="store_true", help="also one Parquet file per video (needs pyarrow)")
    parser.add_argument("--video", action="store_true", help="also the annotated video (MPEG-4)")
    parser.add_argument("--force", action="store_true", help="redo videos already done")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes (or Ray actors), each holding the models once "
                             "(default: the cores here, or the cluster's CPUs, divided by --threads-per-worker)")
    parser.add_argument("--threads-per-worker", type=int, metavar="T",
                        help=f"inference threads per worker, the same on both executors (default: up to "
                             f"{MAX_DEFAULT_THREADS}, the cores divided by --workers when given)")
    cluster = parser.add_argument_group("Ray cluster (the `cluster` extra)")
    cluster.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                         help="run on Ray: auto (the running cluster), HOST:PORT, ray://HOST:10001, or local (start "
                              "one here on 127.0.0.1). Inputs must be readable at the same path or URL on every node")
    cluster.add_argument("--cpus-per-worker", type=float, metavar="C", help="Ray CPUs per worker (default: its threads)")
    cluster.add_argument("--gpus-per-worker", type=float, default=0, metavar="G",
                         help="Ray GPUs per worker, for TensorRT engines (default 0)")
    add_detect_every(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(parser)


def run(args):
    from livepose.batch.inputs import resolve_inputs
    from livepose.batch.run import run_batch

    check_thresholds(args)
    _check_counts(args)
    inputs = resolve_inputs(args.inputs, args.out)
    args.out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known not to contain it
    kinds = ["jsonl"] + (["parquet"] if args.parquet else []) + (["video"] if args.video else [])
    if args.parquet:
        from livepose.batch.parquet import import_pyarrow

        import_pyarrow()
    if args.ray is not None:
        from livepose.batch.ray_executor import check_address, import_ray

        import_ray()
        check_address(args.ray)  # a closed port is one line now, not after the models are hashed
    models, settings = _models_and_settings(args)
    executor = _ExecutorFactory(args, models, settings)
    progress = _Progress(len(inputs), enabled=not args.no_progress)
    try:
        summary = run_batch(inputs, args.out, kinds, models, settings, executor, force=args.force, progress=progress)
    except KeyboardInterrupt:
        progress.close()
        raise Interrupted(f"after {progress.finished} of {len(inputs)} videos; {args.out / 'batch.jsonl'} records "
                          "them; run the same command again to continue") from None
    finally:
        progress.close()
        executor.shutdown()
    return _report(summary, len(inputs), args.out, executor.started)


def _check_counts(args):
    for name in ("workers", "threads_per_worker"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, got {value}")
    if args.gpus_per_worker < 0 or (args.cpus_per_worker is not None and args.cpus_per_worker <= 0):
        raise ValueError("--cpus-per-worker / --gpus-per-worker: expected positive numbers")
    if args.ray is None and (args.gpus_per_worker or args.cpus_per_worker is not None):
        raise ValueError("--cpus-per-worker / --gpus-per-worker: Ray resources; give --ray too")


def _models_and_settings(args):
    from livepose.batch.worker import ModelFiles, WorkerSettings
    from livepose.runtime.model_files import resolve_models

    found = resolve_models(args.pose_model, args.detector, pose_size=args.pose_size, fetch=not args.no_fetch,
                           progress=not args.no_progress)
    cores = os.cpu_count() or 1
    threads = args.threads_per_worker or (max(1, cores // args.workers) if args.workers else min(MAX_DEFAULT_THREADS, cores))
    settings = WorkerSettings(threads=threads, backend=args.backend, precision=args.precision, refine=args.refine,
                              box_threshold=args.box_threshold, detector_layout=args.detector_layout,
                              detect_every=args.detect_every, keypoint_threshold=args.kpt_threshold,
                              boxes=not args.no_boxes, fps_overlay=not args.no_fps)
    return ModelFiles.of(found.pose_model, found.detector), settings


class _ExecutorFactory:
    """Makes the executor when the driver has work for it (no cluster is joined, no model loaded
    when every video is already done); `shutdown` leaves Ray if this run joined it."""

    def __init__(self, args, models, settings):
        self.args, self.models, self.settings = args, models, settings
        self.started, self._joined_ray = 0, False

    def __call__(self, scratch):
        from livepose.batch.local import LocalExecutor
        from livepose.batch.ray_executor import RayExecutor, connect

        args, cores = self.args, os.cpu_count() or 1
        log = lambda message: print(f"livepose: {message}", file=sys.stderr)  # noqa: E731
        if args.ray is None:
            self.started = args.workers or max(1, cores // self.settings.threads)
            return LocalExecutor(self.started, self.models, self.settings, scratch, log=log)
        self._joined_ray = connect(args.ray)
        import ray

        cpus = args.cpus_per_worker or self.settings.threads
        self.started = args.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        return RayExecutor(self.started, self.models, self.settings, cpus=cpus, gpus=args.gpus_per_worker, log=log)

    def shutdown(self):
        if self._joined_ray:
            import ray

            ray.shutdown()


class _Progress:
    """One bar over videos, with frames per second so far."""

    def __init__(self, total, enabled):
        self.total, self.enabled, self.finished, self.frames = total, enabled, 0, 0
        self._bar = None

    def __call__(self, result):
        import time

        from tqdm import tqdm

        if self._bar is None and self.enabled:
            self._bar, self._start = tqdm(total=self.total, unit="video", file=sys.stderr), time.perf_counter()
        self.finished += 1
        self.frames += result.get("frames", 0)
        if self._bar is not None:
            elapsed = max(time.perf_counter() - self._start, 1e-6)
            self._bar.set_postfix_str(f"{self.frames / elapsed:.1f} frames/s", refresh=False)
            self._bar.update(1)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _report(summary, total, out_dir, workers):
    rate = f" ({summary.frames / summary.seconds:.1f} frames/s)" if summary.seconds > 0 else ""
    print(f"livepose: {len(summary.done)} done, {len(summary.failed)} failed, {len(summary.skipped)} skipped "
          f"(already done) of {total} videos; {summary.frames} frames in {summary.seconds:.1f} s{rate}"
          + (f" on {workers} workers" if workers else "; nothing left to do, no worker started")
          + f"; status in {out_dir / 'batch.jsonl'}", file=sys.stderr)
    for key, reason in summary.failed.items():
        print(f"livepose: failed {key}: {reason}", file=sys.stderr)
    return EXIT_VIDEOS_FAILED if summary.failed else 0
