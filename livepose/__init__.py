"""livepose: real-time multi-person pose estimation (person detector -> SimpleBaselines heatmaps).

    import cv2
    from livepose import PoseEstimator

    estimator = PoseEstimator("engines/r50-256x192.onnx", detector="engines/yolox_nano.onnx")
    poses = estimator(cv2.imread("people.jpg"))  # Poses: keypoints (N, 17, 2), scores (N, 17), boxes
"""
from .detector import PersonDetector
from .draw import draw_poses
from .estimator import PoseEstimator
from .metadata import ModelMetadataError, PoseModelMeta
from .types import Detections, Poses

__all__ = [
    "Detections", "ModelMetadataError", "PersonDetector", "PoseEstimator", "PoseModelMeta", "Poses", "draw_poses",
]
