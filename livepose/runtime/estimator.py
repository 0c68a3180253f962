"""Frame (+ person boxes) -> Poses: batched crops, one network call per frame, decode, warp back."""
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from livepose.runtime.backends import open_backend
from livepose.core.crops import crop_persons, normalize_crops
from livepose.core.decode import REFINEMENTS, decode_heatmaps
from livepose.runtime.detector import PersonDetector
from livepose.core.geometry import box_to_center_scale, heatmap_to_frame, xyxy_to_xywh
from livepose.core.metadata import METADATA_KEY, ModelMetadataError, PoseModelMeta, read_onnx_metadata
from livepose.core.types import Detections, Poses

INPUT_NAME, OUTPUT_NAME = "image", "heatmaps"  # the pose model contract (ARCHITECTURE.md)
MIN_BOX_SIDE = 1.0  # px; a zero-width box has no affine crop, so degenerate boxes grow to this


@contextmanager
def _timed(timings, stage):
    """Add the block's duration in seconds to timings[stage] when a dict is given."""
    if timings is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


class PoseEstimator:
    """Top-down multi-person pose estimation on BGR frames.

    pose_model: a livepose pose model (ONNX with `livepose` metadata, or a TensorRT .engine with its
    sidecar); detector: a PersonDetector, a detector model path, or None (then `estimate` needs
    detections). backend / precision / num_threads / max_batch: see backends.open_backend.
    refine: heatmap sub-pixel refinement ("quarter", "dark", "none"); box_threshold: detections
    scoring below it get no pose.
    """

    def __init__(self, pose_model, detector=None, backend="auto", precision=None, refine="quarter",
                 box_threshold=0.0, max_batch=None, num_threads=None, detector_layout=None):
        if refine not in REFINEMENTS:
            raise ValueError(f"refine: expected one of {REFINEMENTS}, got {refine!r}")
        path = Path(pose_model)
        is_engine = path.suffix == ".engine"
        if not is_engine:
            if not path.is_file():
                raise FileNotFoundError(f"pose model {path}: no such file")
            meta = read_onnx_metadata(path)  # before loading: a model without metadata fails fast
        self.backend = open_backend(path, backend, precision=precision, num_threads=num_threads, max_batch=max_batch)
        if is_engine:
            props = getattr(self.backend, "metadata_props", {})
            if METADATA_KEY not in props:
                raise ModelMetadataError(f"pose model {path}: the engine carries no '{METADATA_KEY}' metadata")
            meta = PoseModelMeta.from_json(props[METADATA_KEY], source=str(path))
        self.meta = meta
        self.model_path = path
        self.refine = refine
        self.box_threshold = float(box_threshold)
        self._check_model()
        self._owns_detector = isinstance(detector, (str, Path))
        if self._owns_detector:
            # an explicit CPU runtime applies to both models; a TensorRT pose engine says nothing of the detector
            detector_backend = backend if backend in ("openvino", "onnxruntime") else "auto"
            detector = PersonDetector(detector, backend=detector_backend, layout=detector_layout, num_threads=num_threads)
        self.detector = detector

    def _check_model(self):
        """The model's actual input/output against the contract and its own metadata."""
        meta, backend, path = self.meta, self.backend, self.model_path
        height, width = meta.input_size
        if meta.heatmap_size != (height // 4, width // 4):
            raise ModelMetadataError(
                f"pose model {path}: heatmap_size {meta.heatmap_size} is not a quarter of input_size {meta.input_size}"
            )
        if backend.input_name != INPUT_NAME or backend.output_name != OUTPUT_NAME:
            raise ModelMetadataError(
                f"pose model {path}: expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}', "
                f"got '{backend.input_name}' -> '{backend.output_name}'"
            )
        expected_input = (3, height, width)
        if tuple(backend.input_shape[1:]) != expected_input:
            raise ModelMetadataError(
                f"pose model {path}: input '{INPUT_NAME}' has shape {backend.input_shape}, its metadata says "
                f"(N, 3, {height}, {width})"
            )
        if backend.output_shape is not None:
            self._check_output_shape(tuple(backend.output_shape[1:]))

    def _check_output_shape(self, shape):
        """shape: (K, h, w) of the heatmaps, None where the runtime does not say."""
        expected = (self.meta.num_keypoints, *self.meta.heatmap_size)
        if any(got is not None and got != want for got, want in zip(shape, expected)) or len(shape) != 3:
            raise ModelMetadataError(
                f"pose model {self.model_path}: output '{OUTPUT_NAME}' has shape (N, {', '.join(map(str, shape))}), "
                f"its metadata says (N, {', '.join(map(str, expected))})"
            )

    @property
    def num_keypoints(self):
        return self.meta.num_keypoints

    def estimate(self, frame_bgr, detections=None, timings=None):
        """Poses of the persons in one frame.

        frame_bgr: (H, W, 3) uint8 BGR; detections: person boxes, or None to run the detector;
        timings: an optional dict; seconds spent in detect / crop / pose / decode are added to it.
        """
        frame_bgr = np.asarray(frame_bgr)
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8 or min(frame_bgr.shape[:2]) < 1:
            raise ValueError(f"frame: expected an (H, W, 3) uint8 BGR image, got {frame_bgr.dtype} array of shape {frame_bgr.shape}")
        if detections is None:
            if self.detector is None:
                raise ValueError("detections: none given and the estimator has no detector")
            with _timed(timings, "detect"):
                detections = self.detector(frame_bgr)
        elif not isinstance(detections, Detections):
            raise TypeError(f"detections: expected livepose.Detections, got {type(detections).__name__}")
        if not np.isfinite(detections.boxes).all():
            raise ValueError("detections: boxes must be finite numbers")
        detections = detections[detections.scores >= self.box_threshold]
        if len(detections) == 0:
            return Poses.empty(self.num_keypoints)

        with _timed(timings, "crop"):
            boxes_xywh = xyxy_to_xywh(detections.boxes)
            boxes_xywh[:, 2:] = np.maximum(boxes_xywh[:, 2:], MIN_BOX_SIDE)
            centers, scales = box_to_center_scale(boxes_xywh, self.meta.input_size)
            crops, _ = crop_persons(frame_bgr, centers, scales, self.meta.input_size)
            if self.meta.normalization_in_graph:  # the graph takes 0-255 pixels
                batch = normalize_crops(crops, (0.0, 0.0, 0.0), (1 / 255.0,) * 3, self._swap_channels)
            else:
                batch = normalize_crops(crops, self.meta.mean, self.meta.std, self._swap_channels)
        with _timed(timings, "pose"):
            heatmaps = self.backend.run(batch)  # all persons at once, chunked to the backend's max_batch
        if heatmaps.shape[0] != len(batch):
            raise RuntimeError(f"pose model {self.model_path}: {heatmaps.shape[0]} heatmap sets for {len(batch)} crops")
        self._check_output_shape(tuple(heatmaps.shape[1:]))
        with _timed(timings, "decode"):
            coords, scores = decode_heatmaps(heatmaps, self.refine, sigma=self.meta.sigma)
            keypoints = heatmap_to_frame(coords, centers, scales, self.meta.heatmap_size)
        return Poses(keypoints, scores, detections.boxes, detections.scores)

    __call__ = estimate

    @property
    def _swap_channels(self):
        return self.meta.color_order == "RGB"  # frames are BGR

    def close(self):
        self.backend.close()
        if self._owns_detector:
            self.detector.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
