"""The tracker on synthetic scenes built from real COCO poses: ids asserted exactly."""
import numpy as np
import pytest

from conftest import shared_path
from livepose.core.types import Detections
from livepose.tracking.cost import iou_matrix
from livepose.tracking.jitter import jitter, lag_seconds, plain_one_euro, tracked_keypoints, walk
from livepose.tracking.synthetic import Person, Scene, coco_poses, pose_lookup
from livepose.tracking.tracker import Tracker, TrackerSettings

HEIGHT = 150.0


@pytest.fixture(scope="module")
def poses():
    return coco_poses(shared_path("coco", "coco_train2017_subset", "person_keypoints.json"))


def run(scene, settings=TrackerSettings(), with_poses=True):
    """{person index: [track id per frame it was reported]} and the frames each was reported in."""
    tracker = Tracker(settings)
    ids, frames = {}, {}
    for index, t, detections, truth_poses, truth in scene:
        out = tracker.update(t, detections, pose_lookup(truth_poses) if with_poses else None)
        assert out.track_ids is not None and (out.track_ids > 0).all()
        assert len(set(out.track_ids.tolist())) == len(out), "one id per person in a frame"
        if len(out):
            person = truth[iou_matrix(out.boxes, truth_poses.boxes).argmax(axis=1)]
            for n, track_id in zip(person.tolist(), out.track_ids.tolist()):
                ids.setdefault(n, []).append(track_id)
                frames.setdefault(n, []).append(index)
    return ids, frames


def ids_of(ids):
    return {person: sorted(set(values)) for person, values in ids.items()}


@pytest.mark.parametrize("with_poses", [True, False])
def test_two_people_crossing_keep_their_ids(poses, with_poses):
    # they walk at each other at the same height and pass through each other around t = 2 s
    scene = Scene([Person(poses[0], (100, 300), (120, 0), HEIGHT), Person(poses[1], (600, 305), (-120, 0), HEIGHT)],
                  frames=100)
    ids, frames = run(scene, with_poses=with_poses)
    assert ids_of(ids) == {0: [1], 1: [2]}
    assert frames[0] == frames[1] == list(range(100))  # both reported from the first frame on


def test_a_person_hidden_for_one_second_comes_back_with_the_same_id(poses):
    scene = Scene([Person(poses[2], (100, 300), (100, 0), HEIGHT, hidden=((1.0, 2.0),)),
                   Person(poses[3], (600, 300), (0, 0), HEIGHT)], frames=100)
    ids, frames = run(scene)
    assert ids_of(ids) == {0: [1], 1: [2]}
    assert frames[0] == list(range(25)) + list(range(50, 100))


def test_someone_entering_gets_a_new_id_and_someone_leaving_keeps_theirs_to_the_end(poses):
    scene = Scene([Person(poses[3], (100, 300), (60, 0), HEIGHT, vanish=2.0),
                   Person(poses[4], (500, 300), (-60, 0), HEIGHT, appear=1.2)], frames=100)
    ids, frames = run(scene)
    assert ids_of(ids) == {0: [1], 1: [2]}
    assert frames[0] == list(range(50))
    assert frames[1] == list(range(31, 100))  # tentative on its first frame (30), confirmed on the next


def test_ids_are_not_reused_after_a_track_is_removed(poses):
    # the first person leaves for good; the second enters after the first's track has expired
    scene = Scene([Person(poses[0], (100, 300), (0, 0), HEIGHT, vanish=1.0),
                   Person(poses[1], (100, 300), (0, 0), HEIGHT, appear=4.0)], frames=125)
    ids, _ = run(scene, TrackerSettings(max_lost_seconds=1.0))
    assert ids_of(ids) == {0: [1], 1: [2]}


def test_a_detector_missing_every_third_frame_breaks_no_track(poses):
    scene = Scene([Person(poses[0], (100, 300), (120, 0), HEIGHT), Person(poses[1], (600, 305), (-120, 0), HEIGHT),
                   Person(poses[5], (350, 500), (0, -40), HEIGHT)],
                  frames=100, missed={i for i in range(100) if i % 3 == 2})
    ids, frames = run(scene)
    assert ids_of(ids) == {0: [1], 1: [2], 2: [3]}
    assert frames[0] == [i for i in range(100) if i % 3 != 2]


def test_dropped_frames_on_a_live_source_are_predicted_by_time(poses):
    # fast walkers (2 heights/s) passing each other, and a source that drops runs of 1-3 frames
    # (a third of them) once it runs: a tracker counting frames would predict too short a move
    rng = np.random.default_rng(3)
    dropped, index = set(), 10
    while index < 95:
        run_length = int(rng.integers(1, 4))
        dropped.update(range(index, index + run_length))
        index += run_length + int(rng.integers(2, 6))
    scene = Scene([Person(poses[0], (100, 300), (300, 0), HEIGHT), Person(poses[1], (900, 310), (-300, 0), HEIGHT)],
                  frames=100, dropped=dropped)
    ids, frames = run(scene)
    assert ids_of(ids) == {0: [1], 1: [2]}
    assert frames[0] == sorted(set(range(100)) - dropped)


def test_a_low_score_box_extends_a_track_but_never_starts_one():
    tracker = Tracker(TrackerSettings())
    box = np.array([[100, 100, 150, 250]], float)
    out = tracker.update(0.0, Detections(box, [0.2]))
    assert len(out) == 0 and not tracker.tracks
    assert len(tracker.update(0.04, Detections(box, [0.9]))) == 0  # tentative
    assert tracker.update(0.08, Detections(box, [0.9])).track_ids.tolist() == [1]  # confirmed
    out = tracker.update(0.12, Detections(box + 2, [0.2]))  # half hidden: it scores low
    assert out.track_ids.tolist() == [1]


def test_the_pose_network_gets_no_crop_for_a_low_score_box_that_matches_nothing():
    calls = []

    def estimate(detections):
        calls.append([round(score, 3) for score in detections.scores.tolist()])
        return pose_lookup(_blank_poses(detections))(detections)

    tracker = Tracker(TrackerSettings())
    person, stray = [100, 100, 150, 250], [400, 100, 450, 250]
    tracker.update(0.0, Detections(np.array([person]), [0.9]), estimate)  # first frame: confirmed at once
    tracker.update(0.04, Detections(np.array([person, stray]), [0.25, 0.2]), estimate)
    assert calls == [[0.9], [0.25]]  # the person's low box got a pose, the stray one did not


def _blank_poses(detections):
    from livepose.core.types import Poses

    return Poses(np.zeros((len(detections), 17, 2)), np.zeros((len(detections), 17)), detections.boxes, detections.scores)


def test_smoothing_cuts_jitter_3x_with_at_most_40_ms_lag(poses):
    """The issue's trajectory: 1.5 body heights/s, joint noise 2 % of the height, 25 fps."""
    pose = poses[0]
    truth, noisy, times = walk(pose)
    visible = pose[1] > 0
    smoothed = tracked_keypoints(noisy, times, pose[1])
    reduction = jitter(noisy[:, visible], truth[:, visible]) / jitter(smoothed[:, visible], truth[:, visible])
    lag = lag_seconds(smoothed[:, visible], truth[:, visible], times)
    print(f"\nOne-Euro on body-relative joints: jitter {reduction:.2f}x lower, lag {lag * 1000:.0f} ms")
    assert reduction >= 3.0 and lag <= 0.040
    raw = tracked_keypoints(noisy, times, pose[1], smooth=False)
    np.testing.assert_allclose(raw, noisy.astype(np.float32), atol=1e-3)  # --no-smooth: the raw joints
    plain = plain_one_euro(noisy, times)
    assert jitter(plain[:, visible], truth[:, visible]) > jitter(smoothed[:, visible], truth[:, visible])
