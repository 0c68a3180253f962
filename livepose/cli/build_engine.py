"""`livepose build-engine`: compile the pose model and/or detector into TensorRT engines.

  livepose build-engine --pose M.onnx [--detector D.onnx] [--fp16] [--calib-images DIR | --calib-video F]

Each engine is written with its NAME.engine.json sidecar; with --calib-images or --calib-video it
is first compared with ONNX Runtime FP32 on real people (livepose.tensorrt.build does the work).
Exit codes: 0 built, 1 a failed build or no GPU stack here, 2 bad arguments.
"""
import logging
import shlex
import sys
from pathlib import Path

from livepose.core.metadata import ModelMetadataError, read_onnx_metadata
from livepose.runtime.backends import BackendUnavailable
from livepose.tensorrt.build import (
    EngineJob,
    build_engine,
    calibration_crops,
    detector_check_inputs,
    read_calibration_frames,
    tensorrt_toolchain,
)
from livepose.tensorrt.sidecar import EngineBuildError, EngineMetaError

log = logging.getLogger(__name__)

NAME = "build-engine"
HELP = "compile ONNX models into TensorRT engines (the `gpu` extra)"
DESCRIPTION = ("Compile the pose model and/or detector into TensorRT engines with a metadata sidecar (needs an "
               "NVIDIA GPU and the `gpu` extra).")

DEFAULT_MAX_BATCH = 32       # crops per pose call: a crowded frame in one batch
DEFAULT_WORKSPACE_GIB = 4.0  # builder scratch memory; enough for ResNet-152 tactics on 8 GB cards


def add_arguments(parser):
    parser.add_argument("--pose", type=Path, metavar="M.onnx", help="pose model to compile (dynamic batch)")
    parser.add_argument("--detector", type=Path, metavar="D.onnx", help="person detector to compile (fixed size)")
    parser.add_argument("--fp16", action="store_true", help="build FP16 engines (checked against FP32)")
    parser.add_argument("--strongly-typed", action="store_true",
                        help="FP16 from an FP16 conversion of the ONNX built strongly typed (TensorRT 11's only "
                             "route) also on TensorRT 10, instead of the builder's FP16 flag")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                        help=f"largest pose batch one call takes (default {DEFAULT_MAX_BATCH})")
    parser.add_argument("--workspace", type=float, default=DEFAULT_WORKSPACE_GIB, metavar="GiB",
                        help=f"TensorRT builder workspace in GiB (default {DEFAULT_WORKSPACE_GIB:g})")
    parser.add_argument("--out", type=Path, default=Path("engines"), help="folder for engines (default engines/)")
    calibration = parser.add_mutually_exclusive_group()
    calibration.add_argument("--calib-images", type=Path, metavar="DIR",
                             help="photos of people for the accuracy check against ONNX Runtime FP32")
    calibration.add_argument("--calib-video", type=Path, metavar="F", help="a video of people for the same check")
    parser.add_argument("--force", action="store_true", help="keep an engine that fails the accuracy check")


def run(args, toolchain=None):
    """Build the engines asked for; 0 on success, 1 on a failed build or missing GPU stack, 2 on bad arguments.

    toolchain: the TensorRT Toolchain to build with; None takes the real one (tests pass a fake).
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        jobs = _jobs(args)
    except (ValueError, FileNotFoundError, ModelMetadataError) as error:
        print(f"livepose build-engine: {error}", file=sys.stderr)
        return 2
    if toolchain is None:
        try:
            toolchain = tensorrt_toolchain()
        except (ImportError, BackendUnavailable) as error:
            print(f"livepose build-engine: {error}", file=sys.stderr)
            return 1
    try:
        inputs = _check_inputs(args, jobs)
        for job in jobs:
            build_engine(job, toolchain, inputs.get(job.kind))
    except (EngineBuildError, EngineMetaError, BackendUnavailable, ValueError, FileNotFoundError) as error:
        # BackendUnavailable: the GPU or its driver failed mid-build (one line naming driver and fix)
        print(f"livepose build-engine: {error}", file=sys.stderr)
        return 1
    return 0


def _check_inputs(args, jobs):
    """kind -> real inputs for the accuracy check, from --calib-images / --calib-video ({} without)."""
    if args.calib_images is None and args.calib_video is None:
        return {}
    frames = read_calibration_frames(args.calib_images, args.calib_video)
    inputs, boxes = {}, None
    if args.detector is not None:
        from livepose.runtime.detector import PersonDetector

        # the FP32 reference finds the people; a stale engine beside the ONNX must not
        detector = PersonDetector(args.detector, backend="onnxruntime")
        try:
            inputs["detector"] = detector_check_inputs(frames, detector)
            boxes = [detector(frame).boxes for frame in frames]
        finally:
            detector.close()
    pose = next((job for job in jobs if job.kind == "pose"), None)
    if pose is not None:
        if boxes is None:
            log.warning("no --detector given: the accuracy check crops whole frames instead of detected people")
        inputs["pose"] = calibration_crops(frames, read_onnx_metadata(pose.onnx_path), boxes)
    return inputs


def _jobs(args):
    """EngineJobs from parsed arguments, checking what can be checked before TensorRT is touched."""
    if args.pose is None and args.detector is None:
        raise ValueError("nothing to build: give --pose M.onnx and/or --detector D.onnx")
    if args.max_batch < 1:
        raise ValueError(f"--max-batch: expected a positive integer, got {args.max_batch}")
    if not args.workspace > 0:
        raise ValueError(f"--workspace: expected a positive number of GiB, got {args.workspace}")
    jobs = []
    for kind, path in (("pose", args.pose), ("detector", args.detector)):
        if path is None:
            continue
        if not path.is_file():
            raise FileNotFoundError(f"--{kind} {path}: no such file")
        if kind == "pose":
            read_onnx_metadata(path)  # a pose model without livepose metadata is refused here, with the fix
        command = ["livepose", "build-engine", f"--{kind}", str(path), "--out", str(args.out)]
        if args.fp16:
            command.append("--fp16")
        if args.fp16 and args.strongly_typed:
            command.append("--strongly-typed")
        if kind == "pose":
            command += ["--max-batch", str(args.max_batch)]
        jobs.append(EngineJob(
            kind=kind,
            onnx_path=path,
            engine_path=args.out / f"{path.stem}.engine",
            fp16=args.fp16,
            max_batch=args.max_batch,
            workspace_gib=args.workspace,
            build_command=shlex.join(command),
            force=args.force,
            strongly_typed_fp16=args.fp16 and args.strongly_typed,
        ))
    return jobs
