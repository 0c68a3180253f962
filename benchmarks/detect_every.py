"""What `--detect-every N` costs in accuracy and buys in speed, against detecting on every frame.

    python benchmarks/detect_every.py --pose-model TRAINED.onnx [--every 2 3 5] [--frames 200]

For each N the video is run with the detector every N frames (boxes from the previous poses in
between) and every frame's poses are matched to the N = 1 poses (greedy, by OKS). Reported: mean
OKS of matched persons, the share of N = 1 persons found, and frames per second.

This needs TRAINED weights: with random ones heatmaps are flat, the carried boxes follow noise, and
the agreement figures are a meaningless proxy (the script says so). No trained weights exist in this
repository's CI; whoever has them (`livepose fetch-models`, or `livepose-train import`) can run it.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
MATCH_OKS = 0.5  # below this two skeletons are different persons


def run(estimator, video, frames, every):
    """[Poses per frame] and the seconds it took, detector every `every` frames."""
    from livepose.stream.detect_every import DetectAndPose
    from livepose.stream.sources import VideoSource

    tracker = DetectAndPose(estimator.detector, estimator, every)
    results = []
    start = time.perf_counter()
    for frame in VideoSource(video).frames(frames):
        results.append(tracker(frame.image))
    return results, time.perf_counter() - start, tracker.detections_run


def agreement(reference, test):
    """(OKS of each matched reference person, number of reference persons) for one frame."""
    from livepose.core.agreement import keypoint_oks

    if len(reference) == 0:
        return [], 0
    if len(test) == 0:
        return [], len(reference)
    boxes = reference.boxes
    areas = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1.0)
    # (R, T) OKS of every reference person against every test person
    oks = np.stack([keypoint_oks(reference.keypoints, np.repeat(t[None], len(reference), 0), areas)
                    for t in test.keypoints], axis=1)
    matched = []
    while oks.size and oks.max() >= MATCH_OKS:
        r, t = np.unravel_index(oks.argmax(), oks.shape)
        matched.append(float(oks[r, t]))
        oks[r, :], oks[:, t] = -1, -1
    return matched, len(reference)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pose-model", type=Path, required=True, help="a TRAINED livepose pose model (ONNX)")
    parser.add_argument("--detector", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    parser.add_argument("--video", type=Path, default=SHARED / "videos" / "opencv_vtest.avi")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--every", type=int, nargs="+", default=[2, 3, 5])
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args(argv)

    from livepose.runtime.estimator import PoseEstimator

    with PoseEstimator(args.pose_model, detector=args.detector, backend=args.backend) as estimator:
        if not estimator.meta.trained:
            print("WARNING: random weights: the agreement below is a meaningless proxy (plumbing check only)")
        reference, seconds, _ = run(estimator, args.video, args.frames, 1)
        print(f"\n{args.video.name}, {len(reference)} frames, {estimator.meta.config} on {estimator.backend.name}\n")
        print("| detect every | fps | detector runs | mean OKS vs N=1 | persons of N=1 found |")
        print("|---:|---:|---:|---:|---:|")
        print(f"| 1 | {len(reference) / seconds:.2f} | {len(reference)} | 1 | 100% |")
        for every in args.every:
            poses, seconds, runs = run(estimator, args.video, args.frames, every)
            scores, total = [], 0
            for ref, test in zip(reference, poses):
                matched, count = agreement(ref, test)
                scores += matched
                total += count
            found = len(scores) / total if total else float("nan")
            mean = np.mean(scores) if scores else float("nan")
            print(f"| {every} | {len(poses) / seconds:.2f} | {runs} | {mean:.4f} | {100 * found:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
