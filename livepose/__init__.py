"""livepose: real-time multi-person pose estimation (person detector -> SimpleBaselines heatmaps).

    import cv2
    from livepose import PoseEstimator, process_video

    estimator = PoseEstimator("engines/r50-256x192.onnx", detector="engines/yolox_nano.onnx")
    poses = estimator(cv2.imread("people.jpg"))  # Poses: keypoints (N, 17, 2), scores (N, 17), boxes
    stats = process_video("in.mp4", estimator, out="out.mp4", json="poses.jsonl", mot="tracks.txt")
    # poses from a stream carry track_ids; keypoints are One-Euro smoothed (TrackerSettings(smooth=False): raw)

Importing livepose loads no inference runtime: each is imported when a model is opened with it.
See ARCHITECTURE.md for the layout.
"""
from livepose.core.metadata import ModelMetadataError, PoseModelMeta
from livepose.core.types import Detections, Poses
from livepose.runtime.detector import PersonDetector
from livepose.runtime.estimator import PoseEstimator
from livepose.runtime.open_model import OpenedModel, open_model
from livepose.stream.draw import draw_poses
from livepose.stream.run import (
    Drawing,
    FrameResult,
    StreamInterrupted,
    StreamStats,
    process_video,
    run_stream,
)
from livepose.stream.sources import Frame, VideoSource
from livepose.tracking.smoothing import OneEuroSettings
from livepose.tracking.tracker import Tracker, TrackerSettings
from livepose.tracking.work import TrackAndPose

__all__ = [
    "Detections", "Drawing", "Frame", "FrameResult", "ModelMetadataError", "OpenedModel", "PersonDetector",
    "PoseEstimator", "PoseModelMeta", "Poses", "StreamInterrupted", "StreamStats", "VideoSource", "draw_poses",
    "open_model", "process_video", "run_stream", "OneEuroSettings", "Tracker", "TrackerSettings", "TrackAndPose",
]
