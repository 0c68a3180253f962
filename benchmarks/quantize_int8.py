"""INT8 post-training quantisation of a livepose pose model with NNCF, calibrated on real person crops.

    pip install -e '.[cpu,int8]'          # nncf; keep it out of the runtime install
    python benchmarks/quantize_int8.py --model engines/r50-256x192.onnx --out engines/r50-256x192-int8.onnx

Writes a QDQ ONNX (QuantizeLinear/DequantizeLinear around every conv but the last `--keep-f32` head
layers) that carries the source's livepose metadata plus a note of how it was quantised. OpenVINO
runs it with INT8 kernels (VNNI / AMX); ONNX Runtime's CPU kernels for it are slower than f32, so
use `--backend openvino`.

Calibration crops are cut the way inference cuts them: the COCO subset's ground-truth person boxes
and YOLOX-Nano's boxes on frames of opencv_vtest.avi (both from ../shared/data). Afterwards the script
prints how far INT8 heatmaps (and, for trained weights only, keypoints) are from f32 on those crops.
"""
import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
# an r18 overfit on 8 COCO persons, its own crops, OKS against f32 keypoints for 0 / 1 / 2 / 4 head
# layers kept f32: 0.980 / 0.986 / 0.992 / 0.994; the last deconvolution and the final conv are
# the cheapest pair that passes the 0.99 bar
DEFAULT_KEEP_F32 = 2


def calibration_crops(meta, coco_dir, video, detector_path, video_frames, every):
    """Real person crops, normalised as the model expects: (N, 3, H, W) float32, and where they came from."""
    import cv2

    from livepose.core.crops import crop_persons, normalize_crops
    from livepose.core.geometry import box_to_center_scale, xyxy_to_xywh

    def normalise(frame, boxes_xywh):
        centers, scales = box_to_center_scale(boxes_xywh, meta.input_size)
        crops, _ = crop_persons(frame, centers, scales, meta.input_size, encoding=meta.target_encoding)
        return normalize_crops(crops, meta.mean, meta.std, meta.color_order == "RGB")

    batches, sources = [], []
    annotations = coco_dir / "person_keypoints.json"
    if annotations.is_file():
        data = json.loads(annotations.read_text())
        files = {image["id"]: image["file_name"] for image in data["images"]}
        by_image = {}
        for ann in data["annotations"]:
            if not ann.get("iscrowd") and ann.get("num_keypoints", 0) > 0 and min(ann["bbox"][2:]) > 1:
                by_image.setdefault(ann["image_id"], []).append(ann["bbox"])
        for image_id, boxes in sorted(by_image.items()):
            frame = cv2.imread(str(coco_dir / "images" / files[image_id]))
            batches.append(normalise(frame, np.array(boxes, dtype=np.float64)))
        sources.append(f"{sum(len(b) for b in by_image.values())} COCO ground-truth persons ({coco_dir.name})")
    if video.is_file() and detector_path.is_file():
        from livepose.runtime.detector import PersonDetector

        detector = PersonDetector(detector_path, backend="onnxruntime")
        capture = cv2.VideoCapture(str(video))
        count = 0
        for index in range(video_frames):
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                detections = detector(frame)
                if len(detections):
                    batches.append(normalise(frame, xyxy_to_xywh(detections.boxes)))
                    count += len(detections)
        capture.release()
        sources.append(f"{count} YOLOX-Nano persons on every {every}th of {video_frames} frames of {video.name}")
    if not batches:
        raise SystemExit(f"no calibration data: neither {annotations} nor {video} + {detector_path} exist")
    return np.concatenate(batches), "; ".join(sources)


def head_nodes(model, count):
    """Names of the last `count` layers of the head (final 1x1 conv, then the deconvolutions from the
    last back): the layers whose INT8 rounding moves heatmap peaks most."""
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]
    deconvs = [node.name for node in model.graph.node if node.op_type == "ConvTranspose"]
    return (convs[-1:] + deconvs[::-1])[:count]


def quantize(model_path, out_path, crops, calibration_note, keep_f32=DEFAULT_KEEP_F32):
    """Quantise with NNCF (ONNX in, QDQ ONNX out) and write it with updated livepose metadata.

    The last `keep_f32` head layers stay f32 (see DEFAULT_KEEP_F32).
    """
    import nncf
    import onnx

    from livepose.core.metadata import METADATA_KEY, read_onnx_metadata
    from livepose.files import write_atomic

    meta = read_onnx_metadata(model_path)
    model = onnx.load(str(model_path))
    dataset = nncf.Dataset(list(crops[:, None]), lambda crop: {"image": crop})  # one crop per sample
    kept_f32 = head_nodes(model, keep_f32)
    quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(crops),
                              ignored_scope=nncf.IgnoredScope(names=kept_f32) if kept_f32 else None)
    scope = f"last {keep_f32} head layers f32 ({', '.join(kept_f32)})" if kept_f32 else "every layer INT8"
    note = {"quantization": {"method": f"NNCF post-training INT8 (QDQ), preset performance, {scope}",
                             "nncf": nncf.__version__, "calibration": calibration_note,
                             "source": Path(model_path).name}}
    meta = dataclasses.replace(meta, extra={**meta.extra, **note})
    del quantized.metadata_props[:]
    for key, value in {p.key: p.value for p in model.metadata_props}.items():
        entry = quantized.metadata_props.add()
        entry.key, entry.value = key, meta.to_json() if key == METADATA_KEY else value
    write_atomic(out_path, quantized.SerializeToString())
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="f32 livepose pose model (ONNX)")
    parser.add_argument("--out", type=Path, required=True, help="INT8 QDQ ONNX to write")
    parser.add_argument("--coco", type=Path, default=SHARED / "coco" / "coco_train2017_subset")
    parser.add_argument("--video", type=Path, default=SHARED / "videos" / "opencv_vtest.avi")
    parser.add_argument("--detector", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    parser.add_argument("--video-frames", type=int, default=400, help="frames of --video to take crops from")
    parser.add_argument("--every", type=int, default=20, help="take crops from every Nth of those frames")
    parser.add_argument("--keep-f32", type=int, default=DEFAULT_KEEP_F32, choices=range(5),
                        help="head layers kept f32, from the end: 1 = final conv, 2 = + last deconvolution, "
                             "4 = the whole head, 0 = everything INT8 (fastest, least accurate)")
    args = parser.parse_args(argv)

    from livepose.core.agreement import compare_backends
    from livepose.core.metadata import read_onnx_metadata
    from livepose.runtime.backends.openvino import OpenVinoBackend

    meta = read_onnx_metadata(args.model)
    crops, note = calibration_crops(meta, args.coco, args.video, args.detector, args.video_frames, args.every)
    print(f"calibrating on {len(crops)} crops: {note}")
    start = time.perf_counter()
    quantize(args.model, args.out, crops, note, keep_f32=args.keep_f32)
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")
    with OpenVinoBackend(args.model) as reference, OpenVinoBackend(args.out) as test:
        agreement = compare_backends(reference, test, crops, meta)
    print(f"INT8 vs f32 (OpenVINO) on the calibration crops: {agreement.summary()}")
    if not meta.trained:
        print("note: random weights; the heatmap error is a proxy. Measure keypoints with a trained "
              "checkpoint: benchmarks/accuracy.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
