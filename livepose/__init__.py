"""livepose: real-time multi-person pose estimation (person detector -> SimpleBaselines heatmaps).

    import cv2
    from livepose import PoseEstimator

    estimator = PoseEstimator("engines/r50-256x192.onnx", detector="engines/yolox_nano.onnx")
    poses = estimator(cv2.imread("people.jpg"))  # Poses: keypoints (N, 17, 2), scores (N, 17), boxes
"""
from livepose.runtime.detector import PersonDetector
from livepose.stream.draw import draw_poses
from livepose.runtime.estimator import PoseEstimator
from livepose.core.metadata import ModelMetadataError, PoseModelMeta
from livepose.core.types import Detections, Poses

__all__ = [
    "Detections", "ModelMetadataError", "PersonDetector", "PoseEstimator", "PoseModelMeta", "Poses", "draw_poses",
]
