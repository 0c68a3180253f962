"""Building a TensorRT engine + NAME.engine.json from ONNX, checked against ONNX Runtime FP32.

The library behind `livepose build-engine` (livepose.cli.build_engine). The pose model gets one
optimization profile over its dynamic batch (1, 8, max batch); the detector keeps its fixed input
size. FP16 comes from TensorRT 10's builder flag where the installed TensorRT has it, else
(TensorRT 11) from an FP16 conversion of the ONNX built strongly typed. After a build the engine
and ONNX Runtime FP32 run on the same real person crops; a pose engine whose keypoints disagree
(mean OKS below 0.99) is not written unless forced. Engines, sidecars and the timing cache are
written atomically: a failed build never replaces a working engine.

The TensorRT step is a function in a Toolchain so that everything around it runs, and is
tested, without a GPU.
"""
import logging
import os
import re
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from livepose.core.agreement import compare_backends, compare_detector_backends
from livepose.core.crops import crop_persons, model_input
from livepose.core.geometry import box_to_center_scale
from livepose.core.metadata import read_onnx_metadata, read_onnx_metadata_props
from livepose.files import sha256_of
from livepose.stream.sources import (
    IMAGE_EXTENSIONS,
    MediaError,
    list_images,
    read_image,
)
from livepose.tensorrt.fp16 import convert_to_fp16
from livepose.tensorrt.sidecar import (
    BatchProfile,
    EngineBuildError,
    EngineMeta,
    TensorSpec,
    write_sidecar,
)

log = logging.getLogger(__name__)

CALIBRATION_CROPS = 32       # real crops the accuracy check runs: one full batch, a few seconds on CPU ORT
CALIBRATION_FRAMES = 16      # frames taken from --calib-video, evenly spaced
_GIB = 1 << 30


@dataclass(frozen=True)
class BuildSpec:
    """What the TensorRT step builds: one ONNX file, how, and where its timing cache lives."""

    label: str                   # for messages, e.g. "pose engine r18-256x192"
    onnx_path: Path              # the ONNX TensorRT parses (the FP16 conversion on TensorRT 11)
    input_name: str
    sample_shape: tuple          # (C, H, W) of one input sample
    profile: BatchProfile | None  # None: the input batch is fixed
    fp16_builder_flag: bool      # TensorRT 10 FP16
    strongly_typed: bool         # TensorRT 11 FP16: precision comes from the converted graph
    workspace_bytes: int
    timing_cache: Path


@dataclass(frozen=True)
class Toolchain:
    """What a build needs from TensorRT and the GPU; tests pass a fake one where both are absent."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    has_fp16_builder_flag: bool
    build_plan: Callable          # BuildSpec -> serialized engine bytes; raises EngineBuildError
    open_engine: Callable         # (engine path, EngineMeta) -> Backend


def tensorrt_toolchain(device=0):
    """The real Toolchain; ImportError (what to install) or BackendUnavailable (no GPU) when it cannot be."""
    from livepose.tensorrt import backend as trt_backend

    version, gpu_name, capability = trt_backend.device_info(device)
    return Toolchain(
        tensorrt_version=version,
        gpu_name=gpu_name,
        compute_capability=capability,
        has_fp16_builder_flag=trt_backend.has_fp16_builder_flag(),
        build_plan=lambda spec: trt_backend.build_plan(spec, device=device),
        open_engine=lambda path, meta: trt_backend.TensorRTBackend(path, meta=meta, device=device),
    )


@dataclass(frozen=True)
class EngineJob:
    """One engine to build."""

    kind: str                  # "pose" or "detector"
    onnx_path: Path
    engine_path: Path
    fp16: bool
    max_batch: int
    workspace_gib: float
    build_command: str         # the command that rebuilds this engine, written into its sidecar
    force: bool = False        # keep an engine that fails the accuracy check
    strongly_typed_fp16: bool = False  # FP16 from the converted ONNX even where the builder flag exists


def onnx_io(path):
    """(input TensorSpec, output TensorSpec) of a one-input, one-output ONNX model; -1 for symbolic dims."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ValueError(
            f"model {path}: expected one input and one output, got {[i.name for i in inputs]} -> "
            f"{[o.name for o in graph.output]}"
        )

    def spec(value):
        dims = value.type.tensor_type.shape.dim
        return TensorSpec(value.name, tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims))

    return spec(inputs[0]), spec(graph.output[0])


def plan_profile(kind, input_spec, max_batch, source):
    """The optimization profile for a model's input, or None for a fixed one.

    A pose model must have a dynamic batch and a fixed (C, H, W); a detector a fixed (C, H, W),
    and a dynamic batch there gets the profile 1..1 (one frame per call).
    """
    if any(d == -1 for d in input_spec.shape[1:]):
        raise ValueError(
            f"model {source}: input {input_spec.name!r} has shape {input_spec.shape}; expected a fixed "
            "channels, height and width (export the model at a fixed input size)"
        )
    dynamic = input_spec.shape[0] == -1
    if kind == "pose":
        if not dynamic:
            raise ValueError(
                f"model {source}: input {input_spec.name!r} has a fixed batch of {input_spec.shape[0]}; "
                "a pose model needs a dynamic batch (export it with `livepose-train export`)"
            )
        return BatchProfile.for_max_batch(max_batch)
    return BatchProfile.for_max_batch(1) if dynamic else None


def build_engine(job, toolchain, check_inputs=None):
    """Build, check and write one engine and its sidecar; returns the EngineMeta written.

    check_inputs: (N, 3, H, W) real inputs for the model (person crops normalised for the pose
    model; preprocessed frames for the detector), or None (no check: the sidecar records
    accuracy_checked false). Raises EngineBuildError on a failed build or check; the engine at
    job.engine_path is then left as it was.
    """
    source, engine_path = Path(job.onnx_path), Path(job.engine_path)
    input_spec, output_spec = onnx_io(source)
    profile = plan_profile(job.kind, input_spec, job.max_batch, source)
    # read before the minutes of building: a pose model without usable metadata fails now
    model_meta = read_onnx_metadata(source) if job.kind == "pose" else None
    fp16_mode = _fp16_mode(job, toolchain)
    label = f"{job.kind} engine {engine_path.name}"
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=engine_path.parent) as work:
        spec = BuildSpec(
            label=label,
            onnx_path=_onnx_to_build(source, fp16_mode, Path(work), label),
            input_name=input_spec.name,
            sample_shape=input_spec.shape[1:],
            profile=profile,
            fp16_builder_flag=fp16_mode == "builder-flag",
            strongly_typed=fp16_mode == "strongly-typed-onnx",
            workspace_bytes=int(job.workspace_gib * _GIB),
            timing_cache=engine_path.parent / timing_cache_name(toolchain),
        )
        candidate = _build_candidate(spec, toolchain, source, Path(work) / engine_path.name)
        meta = _engine_meta(job, toolchain, candidate, fp16_mode, profile, input_spec, output_spec)
        meta = _check_accuracy(job, toolchain, meta, candidate, model_meta, check_inputs, label)
        # engine first, then its sidecar: the sidecar's engine_sha256 exposes an interruption in between
        os.replace(candidate, engine_path)
    write_sidecar(meta, engine_path)
    log.info("%s: wrote %s (%s, %s)", label, engine_path, meta.precision, _profile_text(meta))
    return meta


def timing_cache_name(toolchain):
    """The timing cache file for this TensorRT version and GPU model: kernel timings hold for both
    only, and two GPU models building into one folder must not overwrite each other's."""
    gpu = re.sub(r"[^a-z0-9]+", "-", toolchain.gpu_name.lower()).strip("-")
    return f"timing-tensorrt-{toolchain.tensorrt_version}-{gpu}-sm{toolchain.compute_capability}.cache"


def _fp16_mode(job, toolchain):
    """One of sidecar.FP16_MODES for an FP16 job (the builder flag where this TensorRT has it and the
    strongly typed route was not asked for), else None."""
    if not job.fp16:
        return None
    if toolchain.has_fp16_builder_flag and not job.strongly_typed_fp16:
        return "builder-flag"
    return "strongly-typed-onnx"


def _onnx_to_build(source, fp16_mode, work, label):
    """The ONNX TensorRT parses: the source, or its FP16 conversion in `work` for a strongly typed build."""
    if fp16_mode != "strongly-typed-onnx":
        return source
    log.info("%s: converting %s to FP16 for a strongly typed build", label, source.name)
    return convert_to_fp16(source, work / f"{source.stem}.fp16.onnx").path


def _build_candidate(spec, toolchain, source, candidate):
    """Run the TensorRT build and write its plan to `candidate` (in the scratch folder); returns that path."""
    log.info("%s: building from %s with TensorRT %s on %s (this takes minutes)", spec.label, source.name,
             toolchain.tensorrt_version, toolchain.gpu_name)
    candidate.write_bytes(toolchain.build_plan(spec))
    return candidate


def _engine_meta(job, toolchain, candidate, fp16_mode, profile, input_spec, output_spec):
    """The sidecar of a freshly built engine at `candidate`, before the accuracy check."""
    source = Path(job.onnx_path)
    return EngineMeta(
        kind=job.kind,
        engine_sha256=sha256_of(candidate),
        source_onnx=str(source),
        source_onnx_sha256=sha256_of(source),
        tensorrt_version=toolchain.tensorrt_version,
        gpu_name=toolchain.gpu_name,
        compute_capability=toolchain.compute_capability,
        precision="f16" if job.fp16 else "f32",
        fp16_mode=fp16_mode,
        profile=profile,
        input=input_spec,
        output=output_spec,
        onnx_metadata_props=read_onnx_metadata_props(source),
        accuracy_checked=False,
        build_command=job.build_command,
    )


def _check_accuracy(job, toolchain, meta, candidate, model_meta, inputs, label):
    """Compare the candidate engine with ONNX Runtime FP32 on real inputs; the meta with the figures.

    accuracy_checked becomes true when the check passed and means something: keypoints of a
    trained pose model, or a detector's raw output.
    """
    if inputs is None:
        log.warning(
            "%s: no --calib-images or --calib-video given, so the engine is not compared with ONNX Runtime "
            "FP32; its description records accuracy_checked: false", label
        )
        return meta
    from livepose.runtime.backends.onnxruntime import OnnxRuntimeBackend

    with OnnxRuntimeBackend(job.onnx_path) as reference, toolchain.open_engine(candidate, meta) as engine:
        if job.kind == "pose":
            agreement = compare_backends(reference, engine, inputs, model_meta)
        else:
            agreement = compare_detector_backends(reference, engine, inputs)
    print(f"{label} vs ONNX Runtime FP32, {agreement.summary()}", file=sys.stderr)
    if not agreement.passed and not job.force:
        raise EngineBuildError(
            f"{label} disagrees with ONNX Runtime FP32 ({agreement.summary()}); the engine was not written. "
            "Build without --fp16, or pass --force to keep it anyway"
        )
    return replace(
        meta,
        accuracy_checked=agreement.passed and (agreement.compares_keypoints or job.kind == "detector"),
        accuracy={**agreement.to_dict(), "forced": not agreement.passed},
    )


def _profile_text(meta):
    profile = meta.profile
    return f"batch {profile.min}/{profile.opt}/{profile.max}" if profile else f"fixed batch {meta.input.shape[0]}"


# --- calibration crops --------------------------------------------------------------------------


def read_calibration_frames(images_dir=None, video=None):
    """BGR frames (H, W, 3) uint8: up to CALIBRATION_CROPS photos from a folder, else
    CALIBRATION_FRAMES evenly spaced frames of a video."""
    if images_dir is not None:
        return _read_calibration_images(Path(images_dir))
    return _read_calibration_video(video)


def _read_calibration_images(folder):
    if not folder.is_dir():
        raise FileNotFoundError(f"--calib-images {folder}: not a folder")
    expected = f"--calib-images {folder}: expected images ({', '.join(IMAGE_EXTENSIONS)}), found none readable"
    try:
        paths = list_images([folder])
    except MediaError:
        raise ValueError(expected) from None
    frames = []
    for path in paths:
        try:
            frames.append(read_image(path))
        except MediaError:
            continue  # one broken photo among many: the check runs on the others
        if len(frames) == CALIBRATION_CROPS:
            break
    if not frames:
        raise ValueError(expected)
    return frames


def _read_calibration_video(video):
    capture = cv2.VideoCapture(str(video))
    try:
        if not Path(video).is_file() or not capture.isOpened():
            raise ValueError(f"--calib-video {video}: not a readable video file")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = []
        for index in np.linspace(0, max(count - 1, 0), CALIBRATION_FRAMES).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if ok:
                frames.append(frame)
        if not frames:
            raise ValueError(f"--calib-video {video}: no frame could be decoded")
        return frames
    finally:
        capture.release()


def calibration_crops(frames, model_meta, boxes_per_frame=None):
    """(N, 3, H, W) float32 network inputs: person crops from BGR frames, as the estimator makes them.

    boxes_per_frame: per frame an (M, 4) x1, y1, x2, y2 array of person boxes; None, or an empty
    array for a frame, takes the whole frame as the box. At most CALIBRATION_CROPS crops.
    """
    input_size = model_meta.input_size
    batches = []
    for i, frame in enumerate(frames):
        boxes = None if boxes_per_frame is None else np.asarray(boxes_per_frame[i], np.float64).reshape(-1, 4)
        if boxes is None or len(boxes) == 0:
            boxes = np.array([[0, 0, frame.shape[1], frame.shape[0]]], np.float64)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        centers, scales = box_to_center_scale(xywh, input_size)
        crops, _ = crop_persons(frame, centers, scales, input_size, encoding=model_meta.target_encoding)
        batches.append(crops)
    return model_input(np.concatenate(batches)[:CALIBRATION_CROPS], model_meta)


def detector_check_inputs(frames, detector):
    """(N, 3, H, W) detector inputs: the frames preprocessed as PersonDetector does it."""
    return np.concatenate([detector.preprocess(frame)[0] for frame in frames])
