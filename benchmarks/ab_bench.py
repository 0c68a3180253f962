"""`livepose bench` of two checkouts side by side, alternating runs, in one session.

    python benchmarks/ab_bench.py --before ../livepose-old --video ../shared/data/videos/opencv_vtest.avi \
        --pose-model M.onnx --detector D.onnx [--rounds 3 --max-frames 60]

Runs `python -m livepose bench` from each checkout (PYTHONPATH set to it) in turns, A B A B ...,
so machine load falls on both alike, and prints each run's fps and the median of each side and
their ratio. For checking that a refactor left the speed alone.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bench_once(checkout, args, scratch):
    out = Path(scratch) / "bench.json"
    command = [sys.executable, "-m", "livepose", "bench", str(args.video), "--max-frames", str(args.max_frames),
               "--pose-model", str(args.pose_model), "--detector", str(args.detector), "--no-fetch",
               "--backend", args.backend, "--json", str(out)]
    env = dict(os.environ, PYTHONPATH=str(checkout))
    result = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{checkout}: livepose bench failed:\n{result.stderr[-2000:]}")
    return json.loads(out.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (A)")
    parser.add_argument("--after", type=Path, default=REPO, help="this checkout (B, default)")
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--pose-model", type=Path, required=True)
    parser.add_argument("--detector", type=Path, required=True)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-frames", type=int, default=60)
    args = parser.parse_args()
    fps = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            for side in ("before", "after"):
                result = bench_once(getattr(args, side).resolve(), args, scratch)
                fps[side].append(result["fps"])
                stages = ", ".join(f"{k} {v:.1f}" for k, v in result["stages_ms"].items())
                print(f"round {round_index + 1} {side:>6}: {result['fps']:.2f} fps ({stages} ms/frame; "
                      f"load {result['machine'].get('load_average_1min')})", flush=True)
    before, after = statistics.median(fps["before"]), statistics.median(fps["after"])
    print(f"median fps: before {before:.2f}, after {after:.2f}, after/before {after / before:.3f}")


if __name__ == "__main__":
    main()
