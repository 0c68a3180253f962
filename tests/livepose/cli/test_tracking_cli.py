"""`livepose video` with tracking outputs, end to end on a short real video."""
import json

import numpy as np
import pytest

from conftest import shared_path
from test_cli import assert_user_error, livepose, models, read_jsonl  # noqa: F401 (models: a fixture)


def test_jsonl_mot_and_posetrack_of_a_real_video_read_back(tmp_path, models):  # noqa: F811
    motmetrics = pytest.importorskip("motmetrics")
    demo = shared_path("videos", "mmpose_demo.mp4")  # 5 frames of a busy street
    jsonl, mot, posetrack = tmp_path / "p.jsonl", tmp_path / "t.txt", tmp_path / "p.json"
    result = livepose(tmp_path, "video", demo, "--json", jsonl, "--mot", mot, "--posetrack", posetrack, *models)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(jsonl)
    people = [(r["frame"], p) for r in records for p in r["persons"]]
    assert len(records) == 5 and people and all(r["smoothed"] is True for r in records)
    assert all(isinstance(p["track_id"], int) and p["track_id"] >= 1 for _, p in people)
    table = motmetrics.io.loadtxt(str(mot), fmt="mot15-2D")
    assert sorted(table.index) == sorted((frame + 1, p["track_id"]) for frame, p in people)
    document = json.loads(posetrack.read_text())
    assert {"images", "annotations", "categories"} <= set(document)
    assert len(document["annotations"]) == len(people)
    assert all({"image_id", "track_id", "keypoints", "scores"} <= set(a) for a in document["annotations"])
    x, y = people[0][1]["box"][:2]
    assert np.allclose(table.iloc[0][["X", "Y"]].tolist(), (x, y), atol=0.02)


def test_mot_or_posetrack_alone_is_a_valid_output_and_no_smooth_says_so(tmp_path, models):  # noqa: F811
    demo = shared_path("videos", "mmpose_demo.mp4")
    result = livepose(tmp_path, "video", demo, "--posetrack", tmp_path / "p.json", "--no-smooth", "--max-frames", 2, *models)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "p.json").read_text())["livepose"]["smoothed"] is False
    result = livepose(tmp_path, "video", demo, "--mot", tmp_path / "t.txt", "--max-frames", 2, *models)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "t.txt").read_text().strip()


@pytest.mark.parametrize("flag", ["--mot", "--posetrack"])
def test_an_unwritable_tracking_output_is_refused_before_work(tmp_path, flag):
    target = tmp_path / "no_such_folder" / "out"
    # a missing pose model would fail later: the output is checked first
    result = livepose(tmp_path, "video", shared_path("videos", "mmpose_demo.mp4"), flag, target,
                      "--pose-model", tmp_path / "absent.onnx", "--no-fetch")
    assert_user_error(result, target)


@pytest.mark.parametrize("flag, value", [("--smooth-beta", "0"), ("--smooth-min-cutoff", "-1"),
                                         ("--smooth-d-cutoff", "nan"), ("--track-lost-seconds", "0")])
def test_a_non_positive_smoothing_or_tracker_setting_is_one_line(tmp_path, flag, value):
    result = livepose(tmp_path, "video", shared_path("videos", "mmpose_demo.mp4"), "--mot", tmp_path / "t.txt",
                      flag, value, "--no-fetch")
    assert_user_error(result, flag)
