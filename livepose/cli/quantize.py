"""`livepose quantize`: an INT8 pose model for the CPU, checked on the user's own people.

  livepose quantize --pose M.onnx --calib-video V [--max-drop 0.01] [--out M-int8.onnx]

Person crops from the calibration input (detected, or COCO ground-truth boxes) go to NNCF's
accuracy-controlled quantisation (livepose.quantize.int8). The result is written beside the f32
model as NAME-int8.onnx by default, where `--backend auto` picks it up on OpenVINO.
Exit codes: 0 written, 1 the result missed the bar and was not written, 2 bad input.
"""
import logging
import sys
from pathlib import Path

NAME = "quantize"
HELP = "make an INT8 pose model for the CPU (the `int8` extra), accuracy-checked against f32"
DESCRIPTION = ("Quantise a pose model to INT8 with NNCF, calibrated and validated on person crops from your own video, "
               "photos or COCO annotations: layers go back to f32 until the keypoints are within --max-drop mean OKS "
               "of the f32 model's. Writes NAME-int8.onnx beside the model, which `--backend auto` then runs on "
               "OpenVINO (CPUs with VNNI or AMX).")


def add_arguments(parser):
    from livepose.quantize import DEFAULT_MAX_DROP, DEFAULT_MAX_REVERTS

    parser.add_argument("--pose", type=Path, required=True, metavar="M.onnx", help="f32 livepose pose model")
    calibration = parser.add_mutually_exclusive_group(required=True)
    calibration.add_argument("--calib-video", type=Path, metavar="V", help="a video of people (16 frames are used)")
    calibration.add_argument("--calib-images", type=Path, metavar="DIR", help="a folder of photos of people")
    calibration.add_argument("--calib-coco", type=Path, nargs=2, metavar=("ANN", "IMAGES"),
                             help="COCO person keypoints annotations and their image folder (ground-truth boxes)")
    parser.add_argument("--detector", type=Path, metavar="D.onnx",
                        help="person detector for --calib-video / --calib-images (default: as `livepose video` finds it)")
    parser.add_argument("--detector-layout", choices=("yolox", "ultralytics"),
                        help="output layout of --detector when its metadata and checksum do not say")
    parser.add_argument("--no-fetch", action="store_true", help="never download the detector; fail when none is found")
    parser.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP,
                        help=f"largest drop of mean OKS vs f32 allowed (default {DEFAULT_MAX_DROP}: OKS >= 0.99)")
    parser.add_argument("--max-reverts", type=int, default=DEFAULT_MAX_REVERTS, metavar="N",
                        help="at most N steps returning a group of layers to f32 (each compiles and scores a "
                             "candidate; default {DEFAULT_MAX_REVERTS})")
    parser.add_argument("--out", type=Path, metavar="M-int8.onnx", help="INT8 model to write (default NAME-int8.onnx beside --pose)")
    parser.add_argument("--force", action="store_true", help="write the result even when it misses the bar")


def run(args):
    """Quantise; 0 written, 1 missed the bar (nothing written), 2 bad input (raised as a user error)."""
    from livepose.core.metadata import read_onnx_metadata
    from livepose.files import check_readable_file, check_writable
    from livepose.quantize.int8 import QuantizeJob, import_nncf, quantize_pose_model
    from livepose.runtime.open_model import int8_sibling

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    check_readable_file(args.pose, "--pose")
    meta = read_onnx_metadata(args.pose)  # a model without livepose metadata is refused here, with the fix
    job = QuantizeJob(args.pose, args.out or int8_sibling(args.pose), args.max_drop, args.force, args.max_reverts)
    check_writable(job.out_path, "--out")
    crops = calibration_set(args, meta)  # a few seconds; importing nncf (and torch, where installed) takes longer
    import_nncf()
    print(f"livepose quantize: {crops.source} ({len(crops.calibration)} calibrate, {len(crops.validation)} validate)",
          file=sys.stderr)
    result = quantize_pose_model(job, crops)
    note = result.note
    summary = (f"mean OKS vs f32 {note['validation_mean_oks']:.4f}" if note["validation_mean_oks"] is not None
               else f"random weights, heatmap relative error {note['heatmap_rel_error']:.2e}")
    if not note["accuracy_checked"]:
        summary += " (accuracy not checked: NNCF did not choose the f32 layers)"
    summary += (f"; {note['int8_mac_fraction']:.1%} of the convolution work INT8; "
                f"kept f32: {', '.join(note['kept_f32']) or 'none'}")
    if not result.passed:
        what = "written anyway (--force)" if result.written else "not written (--force writes it)"
        print(f"livepose quantize: {job.out_path} {what}: {result.reason}; {summary}", file=sys.stderr)
        return 0 if result.written else 1
    print(f"livepose quantize: wrote {job.out_path}: {summary}", file=sys.stderr)
    return 0


def calibration_set(args, meta):
    """The CalibrationSet the flags name: COCO boxes, or the detector's persons in a video or photos."""
    from livepose.quantize.calibration import coco_crops, detected_crops
    from livepose.runtime.detector import PersonDetector
    from livepose.runtime.model_files import resolve_models

    if args.calib_coco is not None:
        return coco_crops(meta, *args.calib_coco)
    for flag, path in (("--calib-video", args.calib_video), ("--calib-images", args.calib_images)):
        if path is not None and not path.exists():
            raise FileNotFoundError(f"{flag} {path}: no such file or folder")
    found = resolve_models(args.pose, args.detector, fetch=not args.no_fetch)
    detector = PersonDetector(found.detector, layout=args.detector_layout)
    try:
        return detected_crops(meta, detector, video=args.calib_video, images_dir=args.calib_images)
    finally:
        detector.close()
