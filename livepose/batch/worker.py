"""What one batch worker does, whichever executor runs it: open the models once, then turn one
video at a time into complete output files under temporary names.

Temporary names carry host, process id and a random token, so workers on many machines writing
into one shared scratch folder never collide; the driver alone moves them to their final names.
"""
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from livepose.files import sha256_of

OUTPUT_SUFFIXES = {"jsonl": ".jsonl", "parquet": ".parquet", "video": ".mp4"}
ENGINE_SIDECARS = (".engine", ".engine.json")  # travel with a model: open_model takes an engine beside it


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker needs besides the model files; the same on every executor, so a video
    gives the same JSONL on each."""

    threads: int = 1                 # inference threads per worker (ONNX Runtime / OpenVINO)
    backend: str = "auto"
    precision: str | None = None
    refine: str = "quarter"
    box_threshold: float = 0.3
    detector_layout: str | None = None
    detect_every: int = 1
    keypoint_threshold: float = 0.3  # drawing only
    boxes: bool = True
    fps_overlay: bool = True

    def __post_init__(self):
        if self.threads < 1:
            raise ValueError(f"--threads-per-worker: expected a positive integer, got {self.threads}")
        if self.detect_every < 1:
            raise ValueError(f"--detect-every: expected a positive integer, got {self.detect_every}")

    def result_settings(self):
        """The settings that change poses (part of the fingerprint a re-run compares)."""
        kept = ("backend", "precision", "refine", "box_threshold", "detector_layout", "detect_every")
        return {name: value for name, value in asdict(self).items() if name in kept}


@dataclass(frozen=True)
class ModelFiles:
    """The pose model and detector a batch runs: paths here, plus their SHA-256 for the record."""

    pose_model: Path
    detector: Path
    sha256: dict = field(default_factory=dict)

    @classmethod
    def of(cls, pose_model, detector):
        files = [Path(pose_model), Path(detector)] + [p for p in _sidecars(pose_model) + _sidecars(detector)]
        return cls(Path(pose_model), Path(detector), {str(p): sha256_of(p) for p in files})

    def described(self):
        return [{"role": role, "name": path.name, "sha256": self.sha256[str(path)]}
                for role, path in (("pose model", self.pose_model), ("detector", self.detector))]

    def payload(self):
        """{role: [(file name, bytes)]}: the files as they travel through an object store."""
        return {role: [(p.name, p.read_bytes()) for p in [path] + _sidecars(path)]
                for role, path in (("pose", self.pose_model), ("detector", self.detector))}

    @classmethod
    def unpacked(cls, payload, folder):
        """ModelFiles written from a payload into `folder` (a worker's own disk)."""
        paths = {}
        for role, files in payload.items():
            target = Path(folder) / role
            target.mkdir(parents=True, exist_ok=True)
            for index, (name, data) in enumerate(files):
                (target / name).write_bytes(data)
                if index == 0:
                    paths[role] = target / name
        return cls(paths["pose"], paths["detector"])


def _sidecars(path):
    path = Path(path)
    stem = path.with_suffix("")
    return [p for p in (Path(f"{stem}{suffix}") for suffix in ENGINE_SIDECARS) if p != path and p.is_file()]


def open_estimator(models, settings):
    """A PoseEstimator with its PersonDetector, as `livepose video` opens them, with `threads` each
    (in a worker process: OpenCV told to keep quiet, as the command line is)."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    from livepose.runtime.detector import PersonDetector
    from livepose.runtime.estimator import PoseEstimator
    from livepose.runtime.open_model import detector_backend

    detector = PersonDetector(models.detector, backend=detector_backend(settings.backend), layout=settings.detector_layout,
                              score_threshold=settings.box_threshold, num_threads=settings.threads)
    try:
        return PoseEstimator(models.pose_model, detector=detector, backend=settings.backend,
                             precision=settings.precision, refine=settings.refine, num_threads=settings.threads)
    except BaseException:
        detector.close()
        raise


def close_estimator(estimator):
    estimator.close()
    estimator.detector.close()


def unique_name(key, suffix):
    """A file name no other worker on any machine picks: key, host, pid and a random token."""
    flat = key.replace("/", "__")
    return f".{flat}.{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.partial{suffix}"


def process_job(job, estimator, settings, scratch):
    """Process one video into complete files in `scratch`; returns a result dict:
    {"key", "status": "done", "frames", "persons", "seconds", "files": {kind: path}} or
    {"key", "status": "failed", "reason"}. A video that cannot be read fails; nothing is left."""
    from livepose.batch.parquet import ParquetSink
    from livepose.stream.run import Drawing, process_video
    from livepose.stream.sources import VideoSource

    files = {kind: Path(scratch) / unique_name(job["key"], OUTPUT_SUFFIXES[kind]) for kind in job["kinds"]}
    started = time.perf_counter()
    try:
        source = VideoSource(job["source"])
        parquet = ParquetSink(job["key"]) if "parquet" in files else None
        drawing = Drawing(settings.keypoint_threshold, settings.boxes, settings.fps_overlay)
        stats = process_video(source, estimator, out=files.get("video"), json=files.get("jsonl"),
                              sinks=[parquet] if parquet else [], detect_every=settings.detect_every, drawing=drawing,
                              live=False)  # an http(s) video is read whole, never frames dropped
        if parquet is not None:
            parquet.write(files["parquet"], stats.frames, source.fps)
    except Exception as error:  # any reason this one video cannot be done: record it, go on with the rest
        _remove(files.values())
        return {"key": job["key"], "status": "failed", "reason": _one_line(error)}
    except BaseException:
        _remove(files.values())
        raise
    return {"key": job["key"], "status": "done", "frames": stats.frames, "persons": stats.persons,
            "seconds": round(time.perf_counter() - started, 3), "files": {k: str(p) for k, p in files.items()}}


def _one_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _remove(paths):
    for path in paths:
        Path(path).unlink(missing_ok=True)
