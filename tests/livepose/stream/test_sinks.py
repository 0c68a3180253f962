"""Result sinks: JSON Lines per frame, COCO keypoint results (checked by pycocotools), annotated images."""
import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from livepose.core.types import Poses
from livepose.files import MediaError
from livepose.stream.sinks import (
    AnnotatedImageWriter,
    CocoResultsWriter,
    JsonlWriter,
    coco_image_id,
)


def random_poses(count, seed=0):
    rng = np.random.default_rng(seed)
    return Poses(rng.uniform(0, 500, (count, 17, 2)), rng.uniform(0, 1, (count, 17)),
                 np.tile([[10, 20, 110, 220]], (count, 1)), rng.uniform(0.3, 1, count))


def test_jsonl_has_one_line_per_frame_and_replaces_the_old_file_on_close(tmp_path):
    path = tmp_path / "poses.jsonl"
    path.write_text("old\n")
    frames = [random_poses(n, seed=n) for n in (2, 0, 3)]
    with JsonlWriter(path) as writer:
        for index, poses in enumerate(frames):
            writer.write(index, index / 25.0, poses)
            # flushed into the temporary beside it; the old file is untouched until the end
            assert len(writer.staged.temporary.read_text().splitlines()) == index + 1
            assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["poses.jsonl"]
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2]
    assert [r["timestamp"] for r in records] == [0.0, 0.04, 0.08]
    assert [len(r["persons"]) for r in records] == [2, 0, 3]
    person = records[2]["persons"][1]
    assert set(person) == {"box", "box_score", "keypoints"}
    assert np.array(person["keypoints"]).shape == (17, 3)
    np.testing.assert_allclose(np.array(person["keypoints"])[:, :2], frames[2].keypoints[1], atol=0.01)
    np.testing.assert_allclose(np.array(person["keypoints"])[:, 2], frames[2].scores[1], atol=1e-4)
    assert person["box"] == [10.0, 20.0, 110.0, 220.0]


def test_jsonl_after_an_error_keeps_the_old_file(tmp_path):
    path = tmp_path / "poses.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), JsonlWriter(path) as writer:
        writer.write(0, 0.0, random_poses(1))
        raise RuntimeError("a failing stage")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["poses.jsonl"]


def test_jsonl_refuses_an_unwritable_path(tmp_path):
    with pytest.raises(MediaError, match="JSON output .*missing.*does not exist"):
        JsonlWriter(tmp_path / "missing" / "poses.jsonl")


@pytest.mark.parametrize("name, position, expected", [
    ("000000000139.jpg", 5, 139), ("street.jpg", 0, 1), ("street.jpg", 4, 5)])
def test_coco_image_ids(name, position, expected):
    assert coco_image_id(name, position) == expected


def test_coco_results_of_the_ground_truth_score_ap_1(tmp_path, coco_subset):
    """Ground-truth keypoints written as results: pycocotools must read them back as perfect.

    Checks the results format (image ids from file names, x, y, score order, category), not a model.
    """
    pycocotools = pytest.importorskip("pycocotools.coco", reason="COCO results are checked with pycocotools")
    from pycocotools.cocoeval import COCOeval

    annotations, _ = coco_subset
    with contextlib.redirect_stdout(io.StringIO()):
        gt = pycocotools.COCO(str(annotations))
    writer = CocoResultsWriter(tmp_path / "results.json")
    for position, image in enumerate(gt.dataset["images"]):
        anns = [a for a in gt.imgToAnns[image["id"]] if a["num_keypoints"] > 0 and not a["iscrowd"]]
        if not anns:
            continue
        kps = np.array([a["keypoints"] for a in anns], np.float32).reshape(-1, 17, 3)
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
        poses = Poses(kps[..., :2], (kps[..., 2] > 0).astype(np.float32), boxes, np.ones(len(anns), np.float32))
        writer.add(coco_image_id(image["file_name"], position), poses, file_name=image["file_name"])
    writer.close()
    with contextlib.redirect_stdout(io.StringIO()):
        results = gt.loadRes(str(writer.path))
        evaluation = COCOeval(gt, results, "keypoints")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert len(results.getAnnIds()) > 100
    assert evaluation.stats[0] == pytest.approx(1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # written atomically, nothing left over


def test_coco_results_score_is_box_score_times_confident_keypoints(tmp_path):
    scores = np.zeros((1, 17), np.float32)
    scores[0, :4] = [0.9, 0.5, 0.1, 0.15]  # only 0.9 and 0.5 are above the rescoring threshold 0.2
    poses = Poses(np.zeros((1, 17, 2)), scores, np.array([[0, 0, 10, 20]]), np.array([0.8]))
    writer = CocoResultsWriter(tmp_path / "r.json")
    writer.add(7, poses)
    writer.add(8, Poses.empty())
    writer.close()
    (record,) = json.loads((tmp_path / "r.json").read_text())
    assert record["score"] == pytest.approx(0.8 * 0.7, abs=1e-4)
    assert record["bbox"] == [0, 0, 10, 20] and record["image_id"] == 7 and len(record["keypoints"]) == 51


def test_annotated_images_keep_names_and_never_overwrite_inputs(tmp_path):
    photo = tmp_path / "in" / "street.jpg"
    photo.parent.mkdir()
    cv2.imwrite(str(photo), np.zeros((30, 40, 3), np.uint8))
    writer = AnnotatedImageWriter(tmp_path / "out", [photo])
    written = writer.write(photo, np.full((30, 40, 3), 200, np.uint8))
    assert written == tmp_path / "out" / "street.jpg"
    assert np.abs(cv2.imread(str(written)).astype(int) - 200).max() < 5
    with pytest.raises(MediaError, match="would overwrite the input image .*street.jpg"):
        AnnotatedImageWriter(photo.parent, [photo])
    other = tmp_path / "other" / "street.jpg"
    other.parent.mkdir()
    cv2.imwrite(str(other), np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(MediaError, match="same file name"):
        AnnotatedImageWriter(tmp_path / "out2", [photo, other])
    with pytest.raises(MediaError, match="parent .* does not exist"):
        AnnotatedImageWriter(tmp_path / "no" / "such" / "dir", [photo])
    assert Path(tmp_path / "in").exists() and cv2.imread(str(photo)).max() == 0
