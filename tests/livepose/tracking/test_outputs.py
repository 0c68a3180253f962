"""MOT and PoseTrack18 writers: what standard tools read, written whole or not at all."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from livepose.core.types import Poses
from livepose.files import MediaError
from livepose.tracking.outputs import POSETRACK18_KEYPOINTS, MotWriter, PoseTrackWriter, posetrack_keypoints


def tracked(ids, offset=0.0):
    n = len(ids)
    keypoints = np.tile(np.arange(17, dtype=float)[:, None] * [1.0, 2.0], (n, 1, 1)) + offset
    boxes = np.array([[10 + 50 * i, 20, 40 + 50 * i, 120] for i in range(n)], float)
    return Poses(keypoints, np.full((n, 17), 0.8), boxes, np.full(n, 0.9), np.array(ids), smoothed=True)


def result(index, poses):
    return SimpleNamespace(frame=SimpleNamespace(index=index, timestamp=index / 25), poses=poses)


def test_mot_rows_are_one_based_frames_and_parse_with_py_motmetrics(tmp_path):
    motmetrics = pytest.importorskip("motmetrics")
    path = tmp_path / "tracks.txt"
    with MotWriter(path) as writer:
        writer(result(0, tracked([1, 2])))
        writer(result(1, tracked([2])))
        assert not path.exists()  # only the temporary is written until the stream ends
    assert path.read_text().splitlines()[0] == "1,1,11.00,21.00,30.00,100.00,0.9000,-1,-1,-1"
    frame = motmetrics.io.loadtxt(str(path), fmt="mot15-2D")  # back to 0-based pixels
    assert list(frame.index) == [(1, 1), (1, 2), (2, 2)]
    assert frame.loc[(2, 2), "X"] == 10.0 and frame.loc[(1, 2), "Width"] == 30.0
    assert [p.name for p in tmp_path.iterdir()] == ["tracks.txt"]


def test_posetrack_json_has_the_fields_poseval_reads(tmp_path):
    path = tmp_path / "video.json"
    with PoseTrackWriter(path, video_name="clip") as writer:
        writer(result(0, tracked([1, 2])))
        writer(result(1, tracked([2], offset=1.0)))
    document = json.loads(path.read_text())
    assert [image["id"] for image in document["images"]] == [1, 2]
    assert all(image["nframes"] == 2 and image["file_name"].startswith("clip/") for image in document["images"])
    (category,) = document["categories"]
    assert category["name"] == "person" and category["keypoints"] == list(POSETRACK18_KEYPOINTS)
    assert [(a["image_id"], a["track_id"]) for a in document["annotations"]] == [(1, 1), (1, 2), (2, 2)]
    annotation = document["annotations"][0]
    assert len(annotation["keypoints"]) == 51 and len(annotation["scores"]) == 17 and len(annotation["bbox"]) == 4
    assert document["livepose"]["smoothed"] is True


def test_coco_heads_become_posetrack_head_bottom_and_top():
    keypoints = np.zeros((17, 2))
    keypoints[0] = (50, 30)                  # nose
    keypoints[1], keypoints[2] = (45, 25), (55, 25)   # eyes
    keypoints[5], keypoints[6] = (30, 50), (70, 50)   # shoulders: their centre (50, 50)
    scores = np.full(17, 0.9)
    out, out_scores = posetrack_keypoints(keypoints, scores)
    np.testing.assert_allclose(out[1], (50, 40))   # head_bottom: halfway nose - shoulders' centre
    np.testing.assert_allclose(out[2], (50, 10))   # head_top: mirrored about the eyes' centre (50, 25)
    np.testing.assert_allclose(out[3:5], 0) and np.testing.assert_allclose(out_scores[3:5], 0)  # no ears


def test_an_unwritable_output_is_refused_up_front(tmp_path):
    with pytest.raises(MediaError, match="MOT output .*missing.* does not exist"):
        MotWriter(tmp_path / "missing" / "t.txt")
    with pytest.raises(MediaError, match="PoseTrack output .*is a folder"):
        PoseTrackWriter(tmp_path)


def test_a_failed_run_leaves_the_previous_file_untouched(tmp_path):
    path = tmp_path / "tracks.txt"
    path.write_text("the previous run\n")
    writer = MotWriter(path)
    with pytest.raises(ValueError, match="no track ids"):
        writer(result(0, Poses.empty()))
    writer._handle.close()
    assert path.read_text() == "the previous run\n"
