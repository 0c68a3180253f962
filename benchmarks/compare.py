"""Side-by-side speed on one video: livepose's runtimes, the tutorial's way, and YOLO11n-pose.

    python benchmarks/compare.py                       # everything it can find; ~3-5 min on 2 cores
    python benchmarks/compare.py --rounds 5 --frames 60 --json results.json

Contenders (each runs in its own process, one after another, `--rounds` times in turn, so load
from other programs hits all of them alike; the table shows medians, ratios are taken within a round):

- livepose ONNX Runtime f32, OpenVINO f32, OpenVINO bf16 (only where the CPU lists BF16), and
  the product INT8 path: the f32 model with `--backend auto`, which runs NAME-int8.onnx beside it
  on OpenVINO (made first with `livepose quantize --calib-video` when missing); plus any
  --int8-model variants (benchmarks/quantize_int8.py --keep-f32 N): the full streaming pipeline
  as `livepose bench` runs it (read, detect, crop, pose, decode, draw, encode).
- the tutorial's way: the same PoseNet in Paddle dygraph, one crop per call, no pipelining, the same
  detector boxes; given --tutorial-threads threads (default: all cores; its thread count alone
  moves the ratio about 1.5x, so it is printed).
- ultralytics YOLO11n-pose exported to ONNX (random weights: speed only), on OpenVINO f32,
  letterbox + network + confidence filter + NMS per frame. Export it with
  `python benchmarks/export_yolo_pose.py` in an environment with the `yolo` extra.

The pose models have random weights unless you pass trained ones: speed does not depend on the
weights, but the persons-per-frame of a YOLO pose model does (random weights find nobody).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"


def cache_dir():
    from livepose.runtime.model_files import cache_dir as livepose_cache

    folder = livepose_cache() / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------- workers (one per process)

def worker_livepose(spec):
    from livepose.runtime.detector import PersonDetector
    from livepose.runtime.estimator import PoseEstimator
    from livepose.stream.bench import benchmark_video

    detector = PersonDetector(spec["detector"], backend=spec["backend"])
    with PoseEstimator(spec["pose_model"], detector=detector, backend=spec["backend"],
                       precision=spec["precision"], int8=spec.get("int8", False)) as estimator:
        result = benchmark_video(spec["video"], estimator, max_frames=spec["frames"], warmup=3)
    detector.close()
    crops = result.persons_per_frame * result.frames
    return {"fps": result.fps, "crops_per_s": result.crops_per_s, "persons_per_frame": result.persons_per_frame,
            "pose_ms_per_crop": result.stages_ms["pose"] * result.frames / crops if crops else None,
            "stages_ms": result.stages_ms, "precision": result.precision, "peak_rss_mb": result.peak_rss_mb}


def worker_tutorial(spec):
    """The tutorial's inference: dygraph PoseNet, model(crop[None]) per person, sequential."""
    import cv2
    import numpy as np
    import paddle

    from livepose.core.decode import decode_heatmaps
    from livepose.core.geometry import (
        box_to_center_scale,
        get_affine_transform,
        heatmap_to_frame,
        xyxy_to_xywh,
    )
    from livepose.core.types import Poses
    from livepose.runtime.detector import PersonDetector
    from livepose.stream.draw import draw_poses
    from train.model import PoseNet, get_config

    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(spec["threads"])
    config = get_config(spec["config"])
    model = PoseNet(config.depth, config.num_keypoints, config.deconv_channels)
    model.eval()
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
    height, width = config.input_size
    detector = PersonDetector(spec["detector"], backend="onnxruntime")
    capture = cv2.VideoCapture(spec["video"])
    ok, first = capture.read()
    size = first.shape[1], first.shape[0]
    writer = cv2.VideoWriter(str(Path(spec["scratch"]) / "tutorial.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)

    def pose(crop):
        # the tutorial's normalisation and one-crop predict
        x = crop[:, :, ::-1].astype("float32").transpose((2, 0, 1)) / 255
        x = (x - mean) / std
        with paddle.no_grad():
            return model(paddle.to_tensor(x[None])).numpy()

    def process(frame, timing):
        start = time.perf_counter()
        detections = detector(frame)
        boxes = xyxy_to_xywh(detections.boxes)
        centers, scales = box_to_center_scale(boxes, config.input_size)
        keypoints, scores = [], []
        for center, scale in zip(centers, scales):
            crop = cv2.warpAffine(frame, get_affine_transform(center, scale, 0, config.input_size), (width, height),
                                  flags=cv2.INTER_LINEAR)
            t = time.perf_counter()
            heatmaps = pose(crop)
            timing["pose"] += time.perf_counter() - t
            coords, score = decode_heatmaps(heatmaps)
            keypoints.append(heatmap_to_frame(coords, center[None], scale[None], config.heatmap_size)[0])
            scores.append(score[0])
        n = len(keypoints)
        poses = Poses(np.array(keypoints).reshape(n, config.num_keypoints, 2), np.array(scores).reshape(n, -1),
                      detections.boxes, detections.scores)
        writer.write(draw_poses(frame, poses))
        timing["total"] += time.perf_counter() - start
        return n

    for _ in range(2):  # warm-up, untimed
        pose(np.zeros((height, width, 3), np.uint8))
    timing = {"pose": 0.0, "total": 0.0}
    persons, frames, frame = 0, 0, first
    wall = time.perf_counter()
    while ok and frames < spec["frames"]:
        persons += process(frame, timing)
        frames += 1
        ok, frame = capture.read()
    wall = time.perf_counter() - wall
    capture.release()
    writer.release()
    return {"fps": frames / wall, "crops_per_s": persons / timing["pose"], "persons_per_frame": persons / frames,
            "pose_ms_per_crop": 1000 * timing["pose"] / persons, "threads": spec["threads"]}


def worker_yolo_pose(spec):
    import cv2
    import numpy as np

    from livepose.runtime.backends import backend_class
    from livepose.runtime.detector import letterbox, nms

    # a foreign model (no livepose metadata, not a person detector): loaded by the runtime directly
    backend = backend_class("openvino")(spec["yolo_pose"])
    height, width = backend.input_shape[2:]
    capture = cv2.VideoCapture(spec["video"])

    def run(frame):
        image, _ = letterbox(frame, (height, width), centered=True)
        tensor = np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        # (1, 5 + 51, A): cx, cy, w, h, person score, 17 x (x, y, visibility)
        output = backend.run(tensor)[0].T
        keep = output[:, 4] > 0.25
        boxes = output[keep, :4]
        xyxy = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)
        return len(nms(xyxy, output[keep, 4], 0.7))

    ok, frame = capture.read()
    for _ in range(3):
        run(frame)
    frames, persons = 0, 0
    wall = time.perf_counter()
    while ok and frames < spec["frames"]:
        persons += run(frame)
        frames += 1
        ok, frame = capture.read()
    wall = time.perf_counter() - wall
    return {"fps": frames / wall, "persons_per_frame": persons / frames, "precision": backend.precision}


WORKERS = {"livepose": worker_livepose, "tutorial": worker_tutorial, "yolo-pose": worker_yolo_pose}


# ---------------------------------------------------------------- orchestration

def contenders(args):
    """[(label, spec)] of what can run here, and [(label, reason)] of what cannot."""
    from livepose.runtime.backends.openvino import OpenVinoBackend

    base = {"video": str(args.video), "frames": args.frames, "detector": str(args.detector)}
    runs, skipped = [], []
    runs.append(("livepose onnxruntime f32", {**base, "kind": "livepose", "pose_model": str(args.pose_model),
                                              "backend": "onnxruntime", "precision": "f32"}))
    runs.append(("livepose openvino f32", {**base, "kind": "livepose", "pose_model": str(args.pose_model),
                                           "backend": "openvino", "precision": "f32"}))
    if "bf16" in OpenVinoBackend.precisions(None):
        runs.append(("livepose openvino bf16", {**base, "kind": "livepose", "pose_model": str(args.pose_model),
                                                "backend": "openvino", "precision": "bf16"}))
    else:
        skipped.append(("livepose openvino bf16", "this CPU has no BF16 support"))
    runs.append(("livepose auto int8 (product path: NAME-int8.onnx)", {
        **base, "kind": "livepose", "pose_model": str(args.pose_model), "backend": "auto", "precision": None,
        "int8": True, "expect": "int8"}))
    for int8_model in args.int8_model or []:
        label = f"livepose openvino int8 ({int8_model.stem})"
        if int8_model.is_file():
            runs.append((label, {**base, "kind": "livepose", "pose_model": str(int8_model),
                                 "backend": "openvino", "precision": "f32"}))
        else:
            skipped.append((label, f"no INT8 model at {int8_model} (benchmarks/quantize_int8.py --keep-f32 N)"))
    runs.append((f"tutorial: Paddle dygraph, 1 crop/call, {args.tutorial_threads} threads",
                 {**base, "kind": "tutorial", "config": args.config, "threads": args.tutorial_threads}))
    if args.yolo_pose and args.yolo_pose.is_file():
        runs.append(("YOLO11n-pose (openvino f32, random weights)", {**base, "kind": "yolo-pose",
                                                                     "yolo_pose": str(args.yolo_pose)}))
    else:
        skipped.append(("YOLO11n-pose", f"no ONNX at {args.yolo_pose} (benchmarks/export_yolo_pose.py)"))
    return runs, skipped


def make_int8_sibling(args):
    """NAME-int8.onnx beside the f32 model, by `livepose quantize` on the benchmark video, unless there."""
    from livepose.runtime.open_model import int8_sibling

    if int8_sibling(args.pose_model).is_file():
        return
    print(f"making {int8_sibling(args.pose_model)} with livepose quantize ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "livepose", "quantize", "--pose", str(args.pose_model), "--calib-video",
                    str(args.video), "--detector", str(args.detector), "--no-fetch"], check=True, cwd=REPO)


def run_worker(spec, scratch, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    spec = {**spec, "scratch": str(scratch)}
    result = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                            text=True, env=env, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"{spec['kind']} worker failed:\n{result.stderr[-3000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    if spec.get("expect") and figures.get("precision") != spec["expect"]:
        raise RuntimeError(f"expected the {spec['expect']} model to run, got {figures.get('precision')}:\n{result.stderr[-2000:]}")
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=SHARED / "videos" / "opencv_vtest.avi")
    parser.add_argument("--detector", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    parser.add_argument("--config", default="r50-256x192", help="pose model config (also the tutorial's network)")
    parser.add_argument("--pose-model", type=Path, help="f32 pose ONNX (default: a random-weight export in the cache)")
    parser.add_argument("--int8-model", type=Path, nargs="+",
                        help="more INT8 QDQ ONNX files to compare, e.g. benchmarks/quantize_int8.py --keep-f32 2")
    parser.add_argument("--yolo-pose", type=Path, help="YOLO11n-pose ONNX (default: yolo11n-pose.onnx in the cache)")
    parser.add_argument("--frames", type=int, default=30, help="frames per contender per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tutorial-threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--only", nargs="+", metavar="WORD",
                        help="run only contenders whose label contains one of these words (the tutorial always runs)")
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(WORKERS[spec["kind"]](spec)))
        return 0

    cache = cache_dir()
    if args.pose_model is None:
        args.pose_model = cache / f"{args.config}.onnx"
        if not args.pose_model.is_file():
            print(f"exporting a random-weight {args.config} to {args.pose_model} ...", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "train", "export", "--config", args.config, "--out",
                            str(args.pose_model)], check=True, cwd=REPO, capture_output=True)
    make_int8_sibling(args)
    if args.yolo_pose is None:
        args.yolo_pose = cache / "yolo11n-pose.onnx"
    from livepose.stream.bench import machine_info

    runs, skipped = contenders(args)
    if args.only:
        runs = [(label, spec) for label, spec in runs
                if spec["kind"] == "tutorial" or any(word in label for word in args.only)]
    rounds = []
    with tempfile.TemporaryDirectory(prefix="livepose-compare-") as scratch:
        for number in range(args.rounds):
            figures = {"load_before": os.getloadavg()[0]}
            for label, spec in runs:
                threads = spec.get("threads", args.tutorial_threads)
                figures[label] = run_worker(spec, scratch, threads)
                print(f"round {number + 1}/{args.rounds} {label}: {figures[label]['fps']:.2f} fps", file=sys.stderr)
            rounds.append(figures)
    print_table(runs, skipped, rounds, args, machine_info())
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()},
                                         "rounds": rounds}, indent=2))
    return 0


def print_table(runs, skipped, rounds, args, machine):
    tutorial = next(label for label, spec in runs if spec["kind"] == "tutorial")

    def median(label, key):
        values = [r[label][key] for r in rounds if r[label].get(key) is not None]
        return statistics.median(values) if values else None

    def ratio(label, key):
        values = [r[label][key] / r[tutorial][key] for r in rounds if r[label].get(key) and r[tutorial].get(key)]
        return statistics.median(values) if values else None

    loads = ", ".join(f"{r['load_before']:.1f}" for r in rounds)
    print(f"\n{args.video.name}, {args.frames} frames x {len(rounds)} rounds; pose model {args.config}; "
          f"{machine['cpu']}, {machine['cores']} cores, {' '.join(machine.get('isa', []))}; "
          f"load average before each round: {loads}\n")
    print("| contender | end-to-end fps | pose crops/s | ms per crop | persons/frame | fps vs tutorial | crops/s vs tutorial |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, _ in runs:
        cells = [median(label, "fps"), median(label, "crops_per_s"), median(label, "pose_ms_per_crop"),
                 median(label, "persons_per_frame"), ratio(label, "fps"), ratio(label, "crops_per_s")]
        formats = ["{:.2f}", "{:.1f}", "{:.1f}", "{:.2f}", "{:.2f}x", "{:.2f}x"]
        print(f"| {label} | " + " | ".join("-" if v is None else f.format(v) for v, f in zip(cells, formats)) + " |")
    for label, reason in skipped:
        print(f"| {label} | skipped: {reason} | | | | | |")


if __name__ == "__main__":
    sys.exit(main())
