"""`python -m train evaluate`: flip-test alignment, rescoring, OKS-NMS, the CLI with each model source,
detection files, and bad input. Oracle AP figures: tests/livepose/test_oracle.py."""
import argparse
import json

import cv2
import numpy as np
import pytest

pytest.importorskip("pycocotools", reason="COCO AP needs pycocotools: pip install -e '.[train]'")
pytest.importorskip("paddle", reason="train.evaluate needs PaddlePaddle: pip install -e '.[train]'")

from livepose.core.coco import rescore  # noqa: E402
from livepose.core.decode import decode_heatmaps  # noqa: E402
from livepose.core.geometry import (  # noqa: E402
    box_to_center_scale,
    get_affine_transforms,
    warp_points,
)
from livepose.core.skeleton import NUM_KEYPOINTS, OKS_SIGMAS, flip_permutation  # noqa: E402
from train import evaluate  # noqa: E402
from train.dataset import clean_bbox  # noqa: E402
from train.model import get_config  # noqa: E402
from train.targets import generate_targets  # noqa: E402

CONFIG = get_config("r50-256x192")


def cli(*argv):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return evaluate.run(parser.parse_args([str(a) for a in argv]))


# --------------------------------------------------------------------------------------------------
# flip test


def _mirror(joints, width, mirror_x):
    """Joints (K, 2) of a crop -> the joints a mirrored crop shows, channel k = the person's perm[k]."""
    mirrored = joints[flip_permutation()].copy()
    mirrored[:, 0] = mirror_x(mirrored[:, 0], width)
    return mirrored


def test_flip_back_realigns_heatmaps_of_the_crop_mirrored_about_its_centre():
    """A joint at crop x sits at W - x in the crop mirrored about the affine centre W/2; its heatmap peak
    u' = w - u reverses to w - 1 - u' = u - 1, and the one-pixel right shift brings it back to u exactly.
    SimpleBaselines' column reversal of the crop (W - 1 - x) ends 1/4 heatmap px to the right instead."""
    height, width = CONFIG.input_size
    rng = np.random.default_rng(0)
    # sub-pixel joints well inside the crop, so no Gaussian touches the border columns
    joints = np.stack([rng.uniform(40, width - 40, NUM_KEYPOINTS), rng.uniform(40, height - 40, NUM_KEYPOINTS)], 1)
    visible = np.ones(NUM_KEYPOINTS)
    direct, _ = generate_targets(joints, visible, CONFIG.input_size, CONFIG.sigma, subpixel=True)

    mirrored = _mirror(joints, width, lambda x, w: w - x)
    rendered, _ = generate_targets(mirrored, visible, CONFIG.input_size, CONFIG.sigma, subpixel=True)
    back = evaluate.flip_heatmaps_back(rendered[None])[0]
    np.testing.assert_allclose(back, direct, atol=1e-6)
    averaged = 0.5 * (direct + back)
    exact, _ = decode_heatmaps(direct[None], refine="dark", sigma=CONFIG.sigma)
    flipped, _ = decode_heatmaps(averaged[None], refine="dark", sigma=CONFIG.sigma)
    np.testing.assert_allclose(flipped, exact, atol=1e-9)

    # the control: column reversal alone leaves the flipped branch +1/4 heatmap px off in x
    reversed_only = _mirror(joints, width, lambda x, w: w - 1 - x)
    rendered, _ = generate_targets(reversed_only, visible, CONFIG.input_size, CONFIG.sigma, subpixel=True)
    shifted, _ = decode_heatmaps(evaluate.flip_heatmaps_back(rendered[None]), refine="dark", sigma=CONFIG.sigma)
    offset = shifted - exact
    assert np.abs(offset[..., 0] - 0.25).max() < 0.02
    assert np.abs(offset[..., 1]).max() < 0.02


def test_crop_mirrored_is_the_crop_mirrored_about_its_centre(coco_subset):
    _, images = coco_subset
    frame = cv2.imread(str(sorted(images.iterdir())[0]))
    boxes = np.array([[50.0, 40.0, 120.0, 260.0], [200.0, 10.0, 60.0, 90.0]])
    centers, scales = box_to_center_scale(boxes, CONFIG.input_size)
    width = CONFIG.input_size[1]
    plain = get_affine_transforms(centers, scales, CONFIG.input_size)
    crops, mirrored_affines = evaluate.crop_mirrored(frame, centers, scales, CONFIG.input_size)

    points = np.random.default_rng(1).uniform(0, 300, (2, 5, 2))
    in_crop, in_mirror = warp_points(points, plain), warp_points(points, mirrored_affines)
    np.testing.assert_allclose(in_mirror[..., 0], width - in_crop[..., 0], atol=1e-9)
    np.testing.assert_allclose(in_mirror[..., 1], in_crop[..., 1], atol=1e-9)
    for crop, affine in zip(crops, mirrored_affines):
        # the returned affine is the one that makes these pixels (bilinear rounding: 1 grey level)
        direct = cv2.warpAffine(frame, affine, (width, CONFIG.input_size[0]), flags=cv2.INTER_LINEAR)
        assert np.abs(direct.astype(int) - crop.astype(int)).max() <= 1


def test_flip_test_of_the_oracle_returns_the_same_keypoints(coco_subset):
    """Oracle heatmaps of the mirrored crop are exactly mirror-consistent (a perfect network), so the
    flip average must give the unflipped keypoints wherever a joint's Gaussian is clear of the heatmap
    border (there column 0 has no mirrored counterpart)."""
    ann, images = coco_subset
    persons, paths = evaluate.ground_truth_persons(ann, images, CONFIG.input_size)
    oracle = evaluate.oracle_heatmap_fn(persons, CONFIG)
    h, w = CONFIG.heatmap_size
    on_heatmap = warp_points(persons.keypoints[..., :2], get_affine_transforms(persons.centers, persons.scales, CONFIG.heatmap_size))
    margin = 3 * CONFIG.sigma + 2
    interior = ((persons.keypoints[..., 2] > 0) & (on_heatmap[..., 0] > margin) & (on_heatmap[..., 0] < w - 1 - margin)
                & (on_heatmap[..., 1] > margin) & (on_heatmap[..., 1] < h - 1 - margin))
    assert interior.sum() > 900  # of 1166 labelled joints
    for refine in ("quarter", "dark"):
        plain, plain_scores = evaluate.predict_keypoints(oracle, persons, paths, CONFIG,
                                                         evaluate.EvalSettings(refine=refine))
        flipped, flipped_scores = evaluate.predict_keypoints(oracle, persons, paths, CONFIG,
                                                             evaluate.EvalSettings(flip=True, refine=refine))
        assert np.abs(flipped - plain)[interior].max() < 1e-9
        assert np.abs(flipped_scores - plain_scores)[interior].max() < 1e-6


def test_batches_never_exceed_batch_size_and_do_not_change_results(coco_subset):
    ann, images = coco_subset
    persons, paths = evaluate.ground_truth_persons(ann, images, CONFIG.input_size)
    oracle = evaluate.oracle_heatmap_fn(persons, CONFIG)
    sizes = []

    def recording(batch, affines, indices):
        sizes.append(len(batch))
        return oracle(batch, affines, indices)

    small, small_scores = evaluate.predict_keypoints(recording, persons, paths, CONFIG,
                                                     evaluate.EvalSettings(flip=True, batch_size=5))
    large, large_scores = evaluate.predict_keypoints(oracle, persons, paths, CONFIG,
                                                     evaluate.EvalSettings(flip=True, batch_size=64))
    assert max(sizes) == 5 and sum(sizes) == 2 * len(persons)  # plain and mirrored crops
    np.testing.assert_array_equal(small, large)
    np.testing.assert_array_equal(small_scores, large_scores)


# --------------------------------------------------------------------------------------------------
# rescoring and OKS-NMS


def test_rescore_is_box_score_times_mean_of_confident_keypoints():
    scores = np.array([[0.9, 0.5, 0.1, 0.2], [0.1, 0.0, 0.2, 0.15], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(rescore([0.5, 1.0, 0.8], scores), [0.5 * 0.7, 0.0, 0.8])


def _oks_nms_reference(keypoints, scores, areas, threshold):
    """SimpleBaselines' nms.oks_nms / oks_iou, loop for loop (all joints, no visibility threshold)."""
    variances = (np.array(OKS_SIGMAS) * 2) ** 2
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        ious = []
        for j in order[1:]:
            d2 = ((keypoints[j] - keypoints[i]) ** 2).sum(axis=1)
            e = d2 / variances / ((areas[i] + areas[j]) / 2 + np.spacing(1)) / 2
            ious.append(np.exp(-e).mean())
        order = order[1:][np.asarray(ious) <= threshold] if ious else order[1:]
    return keep


def test_oks_nms_matches_the_simplebaselines_loop():
    rng = np.random.default_rng(3)
    kept_counts = []
    for _ in range(20):
        # clusters of jittered copies of a few poses: some pairs above 0.9 OKS, some below
        base = rng.uniform(0, 200, (4, NUM_KEYPOINTS, 2))
        members = rng.integers(0, 4, 25)
        keypoints = base[members] + rng.normal(0, rng.choice([0.5, 2.0, 6.0]), (25, NUM_KEYPOINTS, 2))
        scores = rng.uniform(0, 1, 25)
        areas = rng.uniform(2000, 9000, 25)
        kept = evaluate.oks_nms(keypoints, scores, areas, 0.9)
        assert list(kept) == _oks_nms_reference(keypoints, scores, areas, 0.9)
        kept_counts.append(len(kept))
    assert min(kept_counts) < 25 and max(kept_counts) > 4  # the draws both suppress and keep


def test_oks_nms_keeps_distinct_poses_and_drops_duplicates():
    pose = np.random.default_rng(4).uniform(0, 100, (NUM_KEYPOINTS, 2))
    keypoints = np.stack([pose, pose + 0.1, pose + 80.0])
    kept = evaluate.oks_nms(keypoints, np.array([0.5, 0.9, 0.7]), np.full(3, 5000.0))
    assert list(kept) == [1, 2]


# --------------------------------------------------------------------------------------------------
# command line


@pytest.fixture(scope="module")
def small_subset(coco_subset, tmp_path_factory):
    """The first 8 images of the COCO subset that have persons with keypoints: quick model runs."""
    ann, images = coco_subset
    data = json.loads(ann.read_text())
    with_people = sorted({a["image_id"] for a in data["annotations"] if a.get("num_keypoints", 0) > 0})[:8]
    data["images"] = [i for i in data["images"] if i["id"] in with_people]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in with_people]
    path = tmp_path_factory.mktemp("ann") / "small.json"
    path.write_text(json.dumps(data))
    return path, images


@pytest.fixture(scope="module")
def r18_checkpoint(tmp_path_factory):
    import paddle

    from train.checkpoint import CheckpointMeta, model_state, save_checkpoint
    from train.model import build_model

    paddle.seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "r18.safetensors"
    model = build_model(get_config("r18-256x192"))
    save_checkpoint(path, model_state(model), CheckpointMeta(config="r18-256x192", trained=False, weights_source="random"))
    return path


def _read_outputs(metrics_out, results_out):
    metrics = json.loads(metrics_out.read_text())
    assert list(metrics) == list(evaluate.METRIC_NAMES)
    assert all(isinstance(v, float) and -1.0 <= v <= 1.0 for v in metrics.values())
    results = json.loads(results_out.read_text())
    for entry in results:
        assert set(entry) == {"image_id", "category_id", "keypoints", "score"}
        assert entry["category_id"] == 1 and len(entry["keypoints"]) == 3 * NUM_KEYPOINTS
    return metrics, results


def test_cli_oracle_writes_metrics_and_results(coco_subset, tmp_path, capsys):
    ann, images = coco_subset
    metrics_out, results_out = tmp_path / "m.json", tmp_path / "out" / "results.json"
    assert cli("--config", "r50-384x288", "--oracle", "--ann", ann, "--images", images,
               "--metrics-out", metrics_out, "--results-out", results_out) == 0
    metrics, results = _read_outputs(metrics_out, results_out)
    assert metrics["AP"] >= 0.98
    assert len(results) == 121  # every ground-truth person, none suppressed by OKS-NMS
    assert "AP    0.98" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_onnx_model_with_flip(r18_onnx, small_subset, tmp_path):
    """Random weights: the numbers mean nothing; this checks the ONNX path end to end."""
    ann, images = small_subset
    metrics_out, results_out = tmp_path / "m.json", tmp_path / "r.json"
    assert cli("--config", "r18-256x192", "--model", r18_onnx, "--ann", ann, "--images", images, "--flip",
               "--metrics-out", metrics_out, "--results-out", results_out, "--batch-size", 16) == 0
    _, results = _read_outputs(metrics_out, results_out)
    assert results


@pytest.mark.slow
def test_cli_checkpoint_and_detection_boxes_agree_with_ground_truth_boxes(r18_checkpoint, small_subset, tmp_path):
    """Detections equal to the sanitised ground-truth boxes must give the ground-truth-box results;
    other categories, low scores and images outside the annotation file are dropped."""
    ann, images = small_subset
    data = json.loads(ann.read_text())
    sizes = {i["id"]: (i["height"], i["width"]) for i in data["images"]}
    detections = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": clean_bbox(a["bbox"], sizes[a["image_id"]]).tolist(), "score": 1.0}
        for a in data["annotations"] if not a["iscrowd"] and max(a["keypoints"]) > 0
    ]
    first = detections[0]
    detections += [
        dict(first, category_id=3),
        dict(first, score=0.05),
        dict(first, image_id=999999999),
    ]
    boxes = tmp_path / "dets.json"
    boxes.write_text(json.dumps(detections))
    runs = {}
    for name, extra in (("gt", []), ("dets", ["--boxes", boxes, "--box-score-threshold", 0.1])):
        out = tmp_path / name
        assert cli("--config", "r18-256x192", "--checkpoint", r18_checkpoint, "--ann", ann, "--images", images,
                   "--metrics-out", out / "m.json", "--results-out", out / "r.json", *extra) == 0
        runs[name] = _read_outputs(out / "m.json", out / "r.json")
    key = lambda r: (r["image_id"], r["keypoints"])  # noqa: E731
    assert sorted(runs["gt"][1], key=key) == sorted(runs["dets"][1], key=key)
    assert runs["gt"][0] == runs["dets"][0]


def test_no_detections_scores_zero_and_writes_an_empty_results_file(small_subset, tmp_path):
    ann, images = small_subset
    boxes = tmp_path / "dets.json"
    boxes.write_text(json.dumps([{"image_id": 790, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.01}]))

    def never_called(batch):
        raise AssertionError("no person passed the threshold, so nothing should reach the network")

    settings = evaluate.EvalSettings(boxes=boxes, box_score_threshold=0.5, results_out=tmp_path / "r.json")
    metrics = evaluate.evaluate_model(never_called, CONFIG, ann, images, settings)
    assert metrics["AP"] == 0.0 and metrics["AR"] == 0.0
    assert json.loads((tmp_path / "r.json").read_text()) == []


# --------------------------------------------------------------------------------------------------
# bad input


def _fails(capsys, *argv, names):
    assert cli(*argv) == 2
    err = capsys.readouterr().err
    assert str(names) in err and "Traceback" not in err
    return err


def test_missing_annotation_file(coco_subset, tmp_path, capsys):
    _, images = coco_subset
    missing = tmp_path / "nope.json"
    _fails(capsys, "--config", "r18-256x192", "--oracle", "--ann", missing, "--images", images,
           "--metrics-out", tmp_path / "m.json", names=missing)
    assert not (tmp_path / "m.json").exists()


def test_image_missing_on_disk(coco_subset, tmp_path, capsys):
    ann, images = coco_subset
    data = json.loads(ann.read_text())
    data["images"][0]["file_name"] = "not_there.jpg"
    broken = tmp_path / "ann.json"
    broken.write_text(json.dumps(data))
    err = _fails(capsys, "--config", "r18-256x192", "--oracle", "--ann", broken, "--images", images,
                 "--metrics-out", tmp_path / "m.json", names=images / "not_there.jpg")
    assert "no such file" in err


def test_annotation_file_not_json(coco_subset, tmp_path, capsys):
    _, images = coco_subset
    bad = tmp_path / "ann.json"
    bad.write_text("{not json")
    _fails(capsys, "--config", "r18-256x192", "--oracle", "--ann", bad, "--images", images,
           "--metrics-out", tmp_path / "m.json", names=bad)


def test_unknown_config(coco_subset, tmp_path, capsys):
    ann, images = coco_subset
    with pytest.raises(SystemExit) as exit_info:
        cli("--config", "r7-1x1", "--oracle", "--ann", ann, "--images", images, "--metrics-out", tmp_path / "m.json")
    assert exit_info.value.code == 2
    assert "r7-1x1" in capsys.readouterr().err


@pytest.mark.parametrize("content, expected", [
    ("[{not json", "not JSON"),
    ('{"image_id": 1}', "got a JSON dict"),
    ('[{"image_id": 790, "category_id": 1, "score": 0.9}]', "entry 0 is malformed"),
    ('[{"image_id": 790, "category_id": 1, "bbox": [1, 2, 3], "score": 0.9}]', "entry 0 is malformed"),
])
def test_malformed_detection_file(r18_checkpoint, small_subset, tmp_path, capsys, content, expected):
    ann, images = small_subset
    boxes = tmp_path / "dets.json"
    boxes.write_text(content)
    err = _fails(capsys, "--config", "r18-256x192", "--checkpoint", r18_checkpoint, "--ann", ann, "--images", images,
                 "--boxes", boxes, "--metrics-out", tmp_path / "m.json", names=boxes)
    assert expected in err


def test_checkpoint_of_another_config(r18_checkpoint, small_subset, tmp_path, capsys):
    ann, images = small_subset
    err = _fails(capsys, "--config", "r50-256x192", "--checkpoint", r18_checkpoint, "--ann", ann, "--images", images,
                 "--metrics-out", tmp_path / "m.json", names=r18_checkpoint)
    assert "r18-256x192" in err


def test_oracle_refuses_detection_boxes(coco_subset, tmp_path, capsys):
    ann, images = coco_subset
    boxes = tmp_path / "dets.json"
    boxes.write_text("[]")
    _fails(capsys, "--config", "r18-256x192", "--oracle", "--ann", ann, "--images", images, "--boxes", boxes,
           "--metrics-out", tmp_path / "m.json", names="--boxes")
