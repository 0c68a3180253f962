"""TrackAndPose: detect every N frames through the tracker, untrained models as box trackers."""
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import shared_path
from livepose.core.types import Detections
from livepose.stream.run import as_work, run_stream
from livepose.tracking.synthetic import Person, Scene, coco_poses, pose_lookup
from livepose.tracking.work import TrackAndPose

IMAGE = np.zeros((480, 900, 3), np.uint8)


class SceneModels:
    """A detector and a pose 'network' replaying a synthetic scene frame by frame (the real ones are
    slow and need real footage); counts their calls."""

    def __init__(self, scene, trained=True):
        self.frames = list(scene)
        self.current = 0
        self.detector_calls = 0
        self.meta = SimpleNamespace(trained=trained)
        self.num_keypoints = 17
        self.boxes_posed = []

    def detector(self, image):
        self.detector_calls += 1
        return self.frames[self.current][2]

    def estimate(self, image, detections, timings=None):
        self.boxes_posed.append(detections.boxes.copy())
        return pose_lookup(self.frames[self.current][3])(detections)


def walkers():
    poses = coco_poses(shared_path("coco", "coco_train2017_subset", "person_keypoints.json"))
    return Scene([Person(poses[0], (100, 250), (100, 0), 150.0), Person(poses[1], (700, 260), (-100, 0), 150.0)],
                 frames=60)


def run_frames(models, work):
    ids = []
    for n, (_, t, _, _, _) in enumerate(models.frames):
        models.current = n
        ids.append(work(IMAGE, {}, timestamp=t).track_ids.tolist())
    return ids


@pytest.mark.parametrize("trained", [True, False])
def test_detect_every_5_carries_tracks_between_detections(trained):
    models = SceneModels(walkers(), trained)
    work = TrackAndPose(models.detector, models, detect_every=5)
    assert work.settings.use_pose is trained  # an untrained model's poses take no part
    ids = run_frames(models, work)
    assert models.detector_calls == 12 == work.detections_run  # frames 0, 5, 10, ...
    assert ids == [[1, 2]] * 60  # everyone, every frame, same ids, also through the crossing


def test_the_detector_runs_at_once_when_nobody_is_tracked():
    models = SceneModels(walkers())
    models.frames = [(i, t, Detections.empty(), poses.select(np.zeros(0, int)), truth[:0])
                     for i, t, _, poses, truth in models.frames[:3]] + models.frames[3:]
    work = TrackAndPose(models.detector, models, detect_every=10)
    run_frames(models, work)
    assert models.detector_calls == 1 + 1 + 1 + 1 + 6  # every empty frame, then 3, 13, 23, ...


def test_a_pose_estimator_becomes_the_tracking_work_and_run_stream_passes_timestamps():
    models = SceneModels(walkers())

    def detector(image):  # detection every frame, in order, on the inference thread: frame n is call n
        models.current = models.detector_calls
        return models.detector(image)

    estimator = SimpleNamespace(estimate=models.estimate, detector=detector, meta=models.meta, num_keypoints=17)
    work = as_work(estimator)
    assert isinstance(work, TrackAndPose)
    seen = []
    stats = run_stream([IMAGE] * 20, work, [lambda result: seen.append(result.poses.track_ids.tolist())], fps=25.0)
    assert stats.frames == 20 and stats.detector_runs == 20
    assert seen == [[1, 2]] * 20
    assert "track" in stats.stages_ms
