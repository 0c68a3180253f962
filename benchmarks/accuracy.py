"""How closely the fast paths (OpenVINO f32 / bf16 / INT8) follow ONNX Runtime f32, on a trained model.

    python benchmarks/accuracy.py --checkpoint overfit.safetensors --config r50-256x192
    python benchmarks/accuracy.py --config r18-256x192 --overfit-steps 200   # makes the checkpoint (slow)

Random weights give flat heatmaps, so keypoint agreement needs real peaks: a checkpoint overfit on
a few real persons (train.fit.overfit_checkpoint) run on those persons' own training crops. Reported
per path: mean OKS against the f32 keypoints (target >= 0.99), keypoint deviation in crop pixels,
and the heatmaps' relative L2 error. INT8 needs NNCF (the `int8` extra) in --nncf-python.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
COCO = SHARED / "coco" / "coco_train2017_subset"


def training_crops(meta, persons):
    """The overfit persons' crops, exactly as training cut them: (N, 3, H, W) float32."""
    import cv2

    from livepose.core.crops import crop_persons, normalize_crops
    from train.fit import overfit_persons
    from train.model import get_config

    records = overfit_persons(COCO / "person_keypoints.json", COCO / "images", get_config(meta.config), persons)
    crops = []
    for record in records:
        frame = cv2.imread(record.image_path)
        crop, _ = crop_persons(frame, record.center[None], record.scale[None], meta.input_size,
                               encoding=meta.target_encoding)
        crops.append(normalize_crops(crop, meta.mean, meta.std, meta.color_order == "RGB"))
    return np.concatenate(crops)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="r50-256x192")
    parser.add_argument("--checkpoint", type=Path, help="an overfit checkpoint (default: make one)")
    parser.add_argument("--persons", type=int, default=8, help="persons the checkpoint was overfit on")
    parser.add_argument("--overfit-steps", type=int, default=200)
    parser.add_argument("--nncf-python", default=sys.executable, help="a python with nncf, for the INT8 model")
    parser.add_argument("--work", type=Path, help="keep the exported models here (default: a temporary folder)")
    args = parser.parse_args(argv)

    from livepose.core.agreement import compare_backends
    from livepose.core.metadata import read_onnx_metadata
    from livepose.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from livepose.runtime.backends.openvino import OpenVinoBackend

    with tempfile.TemporaryDirectory(prefix="livepose-accuracy-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        checkpoint = args.checkpoint
        if checkpoint is None:
            from train.fit import overfit_checkpoint

            checkpoint = work / f"{args.config}-overfit.safetensors"
            print(f"overfitting {args.config} on {args.persons} persons for {args.overfit_steps} steps ...", flush=True)
            error = overfit_checkpoint(checkpoint, COCO / "person_keypoints.json", COCO / "images", args.config,
                                       persons=args.persons, steps=args.overfit_steps)
            print(f"  mean keypoint error on its training crops: {error:.3f} heatmap px")
        f32 = work / f"{args.config}-trained.onnx"
        subprocess.run([sys.executable, "-m", "train", "export", "--config", args.config, "--checkpoint",
                        str(checkpoint), "--out", str(f32)], check=True, cwd=REPO, capture_output=True)
        meta = read_onnx_metadata(f32)
        if not meta.trained:
            raise SystemExit(f"{checkpoint}: its metadata says random weights; keypoint agreement would mean nothing")
        crops = training_crops(meta, args.persons)

        paths = [("openvino f32", f32, "f32")]
        if "bf16" in OpenVinoBackend.precisions(None):
            paths.append(("openvino bf16", f32, "bf16"))
        int8 = work / f"{args.config}-trained-int8.onnx"
        made = subprocess.run([args.nncf_python, str(REPO / "benchmarks" / "quantize_int8.py"), "--model", str(f32),
                               "--out", str(int8)], cwd=REPO, capture_output=True, text=True)
        if made.returncode == 0:
            paths.append(("openvino int8 (NNCF PTQ)", int8, "f32"))
        else:
            print(f"INT8 skipped: quantize_int8.py failed ({made.stderr.strip().splitlines()[-1:]})")

        print(f"\n{args.config}, {len(crops)} training crops of an overfit checkpoint; reference: onnxruntime f32\n")
        print("| path | mean OKS vs f32 | keypoint deviation mean / max (crop px) | heatmap rel. error |")
        print("|---|---:|---:|---:|")
        with OnnxRuntimeBackend(f32) as reference:
            for label, path, precision in paths:
                with OpenVinoBackend(path, precision=precision) as test:
                    a = compare_backends(reference, test, crops, meta)
                print(f"| {label} | {a.mean_oks:.4f} | {a.keypoint_mean_px:.3f} / {a.keypoint_max_px:.3f} | "
                      f"{a.heatmap_rel_error:.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
