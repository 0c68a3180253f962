"""People over time: track ids (Kalman + IoU/OKS association), One-Euro smoothing, the tracking
per-frame work, and MOT / PoseTrack outputs."""
