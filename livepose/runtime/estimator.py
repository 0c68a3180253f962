"""Frame (+ person boxes) -> Poses: batched crops, one network call per frame, decode, warp back."""
from pathlib import Path

import numpy as np

from livepose.core.crops import crop_persons, model_input
from livepose.core.decode import DEFAULT_REFINE, REFINEMENTS, decode_heatmaps
from livepose.core.geometry import box_to_center_scale, heatmap_to_frame, xyxy_to_xywh
from livepose.core.metadata import ModelMetadataError
from livepose.core.types import Detections, Poses, check_frame
from livepose.runtime.detector import PersonDetector
from livepose.runtime.open_model import detector_backend, open_model
from livepose.timing import timed

INPUT_NAME, OUTPUT_NAME = "image", "heatmaps"  # the pose model contract (ARCHITECTURE.md)
MIN_BOX_SIDE = 1.0  # px; a zero-width box has no affine crop, so degenerate boxes grow to this


class PoseEstimator:
    """Top-down multi-person pose estimation on BGR frames.

    pose_model: a livepose pose model (ONNX with `livepose` metadata, or a TensorRT .engine with its
    sidecar); detector: a PersonDetector, a detector model path, or None (then `estimate` needs
    detections). backend / precision / num_threads / max_batch / int8: see runtime.open_model.
    refine: heatmap sub-pixel refinement ("quarter", "dark", "none"), None: the one for the model's
    target encoding (DEFAULT_REFINE); crops and warp-back always follow that encoding, so a model is
    never decoded another way than it was trained. box_threshold: detections scoring below it get no pose.
    """

    def __init__(self, pose_model, detector=None, backend="auto", precision=None, refine=None,
                 box_threshold=0.0, max_batch=None, num_threads=None, detector_layout=None, int8=True):
        if refine is not None and refine not in REFINEMENTS:
            raise ValueError(f"refine: expected one of {REFINEMENTS}, got {refine!r}")
        opened = open_model(pose_model, "pose", backend, precision=precision, num_threads=num_threads,
                            max_batch=max_batch, int8=int8)
        self.backend, self.meta, self.model_path = opened.backend, opened.meta, opened.path
        self.precision = opened.precision  # int8 for a quantised model file
        self.refine = refine or DEFAULT_REFINE[self.meta.target_encoding]
        self.box_threshold = float(box_threshold)
        self._owns_detector = isinstance(detector, (str, Path))
        try:
            self._check_model()
            if self._owns_detector:
                detector = PersonDetector(detector, backend=detector_backend(backend), layout=detector_layout,
                                          num_threads=num_threads)
        except BaseException:
            self.backend.close()
            raise
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
        frame_bgr = check_frame(frame_bgr)
        if detections is None:
            if self.detector is None:
                raise ValueError("detections: none given and the estimator has no detector")
            with timed(timings, "detect"):
                detections = self.detector(frame_bgr)
        elif not isinstance(detections, Detections):
            raise TypeError(f"detections: expected livepose.Detections, got {type(detections).__name__}")
        if not np.isfinite(detections.boxes).all():
            raise ValueError("detections: boxes must be finite numbers")
        detections = detections[detections.scores >= self.box_threshold]
        if len(detections) == 0:
            return Poses.empty(self.num_keypoints)

        with timed(timings, "crop"):
            boxes_xywh = xyxy_to_xywh(detections.boxes)
            boxes_xywh[:, 2:] = np.maximum(boxes_xywh[:, 2:], MIN_BOX_SIDE)
            centers, scales = box_to_center_scale(boxes_xywh, self.meta.input_size)
            crops, _ = crop_persons(frame_bgr, centers, scales, self.meta.input_size,
                                    encoding=self.meta.target_encoding)
            batch = model_input(crops, self.meta)
        with timed(timings, "pose"):
            heatmaps = self.backend.run(batch)  # all persons at once, chunked to the backend's max_batch
        if heatmaps.shape[0] != len(batch):
            raise RuntimeError(f"pose model {self.model_path}: {heatmaps.shape[0]} heatmap sets for {len(batch)} crops")
        self._check_output_shape(tuple(heatmaps.shape[1:]))
        with timed(timings, "decode"):
            coords, scores = decode_heatmaps(heatmaps, self.refine, sigma=self.meta.sigma)
            keypoints = heatmap_to_frame(coords, centers, scales, self.meta.heatmap_size, self.meta.target_encoding)
        return Poses(keypoints, scores, detections.boxes, detections.scores)

    __call__ = estimate

    def close(self):
        self.backend.close()
        if self._owns_detector:
            self.detector.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
