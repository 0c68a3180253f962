"""COCOPose on the real COCO subset and on tiny synthetic COCO files: counts, targets, flip, crops, errors."""
import argparse
import json
import math

import cv2
import numpy as np
import pytest

pytest.importorskip("paddle", reason="training needs PaddlePaddle: pip install -e '.[train]'")
pytest.importorskip("pycocotools")

from livepose.core.skeleton import FLIP_PAIRS, KEYPOINT_NAMES  # noqa: E402
from train import fit  # noqa: E402
from train.dataset import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augmentation,
    COCOPose,
    DatasetError,
    EpochBatchSampler,
    coco_paths,
    half_body_box,
    load_coco_persons,
)
from train.model import CONFIGS  # noqa: E402

R18 = CONFIGS["r18-256x192"]
LEFT_WRIST, RIGHT_WRIST = KEYPOINT_NAMES.index("left_wrist"), KEYPOINT_NAMES.index("right_wrist")
NO_RANDOM_GEOMETRY = dict(scale_factor=0.0, rotation_prob=0.0, half_body_prob=0.0)


def tutorial_counts(ann_file, input_size):
    """(persons kept by the tutorial's loader, persons kept after its _select_data), from the raw JSON.

    Written out from the tutorial's text, independently of train.dataset: non-crowd persons with a
    labelled keypoint and area > 0, box clipped to the image, aspect-fixed box padded by 1.25, and
    exp(-d^2 / (2 * 0.2^2 * area)) > 0.2 / 16 * n + 0.45 - 0.2 / 16 for n labelled joints at mean
    distance d from the box centre.
    """
    data = json.loads(ann_file.read_text())
    images = {image["id"]: image for image in data["images"]}
    aspect = input_size[1] / input_size[0]
    loaded = selected = 0
    for ann in data["annotations"]:
        if ann["iscrowd"] or max(ann["keypoints"]) == 0 or ann["area"] <= 0:
            continue
        image = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        x1, y1 = max(0, x), max(0, y)
        x2, y2 = min(image["width"] - 1, x1 + max(0, w - 1)), min(image["height"] - 1, y1 + max(0, h - 1))
        if x2 < x1 or y2 < y1:
            continue
        loaded += 1
        w, h = x2 - x1, y2 - y1
        cx, cy = x1 + w / 2, y1 + h / 2
        if w > aspect * h:
            h = w / aspect
        else:
            w = h * aspect
        area = (w * 1.25) * (h * 1.25)
        labelled = [(ann["keypoints"][3 * j], ann["keypoints"][3 * j + 1]) for j in range(17)
                    if ann["keypoints"][3 * j + 2] > 0]
        mx = sum(p[0] for p in labelled) / len(labelled)
        my = sum(p[1] for p in labelled) / len(labelled)
        ks = math.exp(-((mx - cx) ** 2 + (my - cy) ** 2) / (2 * 0.2**2 * area))
        if ks > 0.2 / 16 * len(labelled) + 0.45 - 0.2 / 16:
            selected += 1
    return loaded, selected


def test_person_counts(coco_subset):
    ann, images = coco_subset
    # MANIFEST: 121 non-crowd persons with keypoints; all of them have a usable box. The tutorial's
    # _select_data then drops 8 whose few labelled joints sit far from the box centre (e.g. annotation
    # 1685431: 1 joint, 114 px above the centre of a 400 px box), leaving 113.
    assert tutorial_counts(ann, R18.input_size) == (121, 113)
    for config in (R18, CONFIGS["r50-384x288"]):
        assert len(load_coco_persons(ann, images, config.input_size, select=False)) == 121
        records = load_coco_persons(ann, images, config.input_size)
        assert len(records) == 113
        assert all((r.visible > 0).any() for r in records)


@pytest.fixture(scope="module")
def subset_records(coco_subset):
    return load_coco_persons(*coco_subset, R18.input_size)


def test_target_peaks_sit_on_the_warped_joints_with_augmentation(subset_records):
    h, w = R18.heatmap_size
    checked, flipped, rotated = 0, 0, 0
    for seed in (0, 1, 2):
        dataset = COCOPose(subset_records[:12], R18, Augmentation(), seed=seed)
        for index in range(len(dataset)):
            sample = dataset.sample(index, epoch=seed)
            flipped += sample.flipped
            rotated += sample.rotation != 0
            centre = sample.joints / 4.0  # crop px -> heatmap px
            for j in np.flatnonzero(sample.weight > 0):
                peak = np.unravel_index(np.argmax(sample.target[j]), (h, w))[::-1]
                if 0 <= round(centre[j, 0]) < w and 0 <= round(centre[j, 1]) < h:
                    assert sample.target[j].max() == pytest.approx(1.0)
                    assert np.linalg.norm(np.array(peak) - centre[j]) <= 1.0, (seed, index, j)
                    checked += 1
                else:  # the Gaussian's centre is off the map: only its tail shows
                    assert sample.target[j].max() < 1.0
            assert not sample.target[sample.weight == 0].any()
    assert checked > 300 and flipped > 5 and rotated > 5


def write_coco(root, images, annotations):
    """A COCO keypoints file at root/ann.json and images in root/images; returns (ann, images dir)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for image_id, (name, pixels) in enumerate(images, start=1):
        if pixels is not None:
            cv2.imwrite(str(root / "images" / name), pixels)
        height, width = (pixels.shape[:2] if pixels is not None else (480, 640))
        entries.append({"id": image_id, "file_name": name, "width": width, "height": height})
    anns = [dict(id=i, category_id=1, iscrowd=0, num_keypoints=sum(v > 0 for v in a["keypoints"][2::3]), **a)
            for i, a in enumerate(annotations, start=1)]
    data = {"images": entries, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(KEYPOINT_NAMES), "skeleton": []}]}
    ann_file = root / "ann.json"
    ann_file.write_text(json.dumps(data))
    return ann_file, root / "images"


def marked_person(wrist_xy=(300, 200)):
    """A black 640x480 image with a white dot where the person's left wrist is labelled."""
    image = np.zeros((480, 640, 3), np.uint8)
    cv2.circle(image, wrist_xy, 3, (255, 255, 255), -1)
    rng = np.random.default_rng(5)
    keypoints = np.zeros((17, 3))
    keypoints[:, 0] = rng.uniform(260, 380, 17)
    keypoints[:, 1] = rng.uniform(100, 400, 17)
    keypoints[:, 2] = 2
    keypoints[LEFT_WRIST, :2] = wrist_xy
    ann = {"image_id": 1, "bbox": [250.0, 90.0, 140.0, 320.0], "area": 140.0 * 320.0,
           "keypoints": keypoints.ravel().tolist()}
    return image, ann


def test_crop_pixels_follow_the_joints_through_augmentation(tmp_path):
    image, ann = marked_person()
    ann_file, images = write_coco(tmp_path, [("a.png", image)], [ann])  # lossless: the dot stays a clean blob
    record = load_coco_persons(ann_file, images, R18.input_size, select=False)
    dataset = COCOPose(record, R18, Augmentation(half_body_prob=0.0), seed=0)
    seen_flipped = seen_plain = 0
    for epoch in range(16):
        sample = dataset.sample(0, epoch)
        # the dot is labelled left wrist; after a flip it is the right wrist
        joint = RIGHT_WRIST if sample.flipped else LEFT_WRIST
        seen_flipped += sample.flipped
        seen_plain += not sample.flipped
        grey = sample.crop[..., 0].astype(np.float64)
        ys, xs = np.nonzero(grey > 64)
        weights = grey[ys, xs]
        dot = np.array([np.average(xs, weights=weights), np.average(ys, weights=weights)])
        assert np.linalg.norm(dot - sample.joints[joint]) < 1.0, (epoch, dot, sample.joints[joint])
    assert seen_flipped and seen_plain


def test_flip_swaps_the_pairs_and_mirrors_the_crop(subset_records):
    record = [max(subset_records, key=lambda r: (r.visible.sum(), -r.annotation_id))]
    plain = COCOPose(record, R18, Augmentation(flip_prob=0.0, **NO_RANDOM_GEOMETRY)).sample(0)
    mirrored = COCOPose(record, R18, Augmentation(flip_prob=1.0, **NO_RANDOM_GEOMETRY)).sample(0)
    assert mirrored.flipped and not plain.flipped
    width = R18.input_size[1]
    # the tutorial's flip (x -> W0 - 1 - x, centre likewise) mirrors the crop about its centre line x = W / 2
    for left, right in FLIP_PAIRS:
        for a, b in ((left, right), (right, left)):
            np.testing.assert_allclose(mirrored.joints[a], [width - plain.joints[b, 0], plain.joints[b, 1]], atol=1e-6)
            assert mirrored.visible[a] == plain.visible[b]
    np.testing.assert_allclose(mirrored.joints[0], [width - plain.joints[0, 0], plain.joints[0, 1]], atol=1e-6)
    # so crop column j shows what the plain crop's column W - j shows (a one-pixel offset from an array flip)
    shifted = np.abs(mirrored.crop[:, 1:].astype(int) - plain.crop[:, :0:-1]).mean()
    array_flip = np.abs(mirrored.crop.astype(int) - plain.crop[:, ::-1]).mean()
    assert shifted < 1.0 < array_flip


def test_samples_are_a_function_of_seed_epoch_and_index(subset_records):
    dataset = COCOPose(subset_records[:4], R18, Augmentation(), seed=3)
    image, target, weight = dataset[(2, 1)]
    again = COCOPose(subset_records[:4], R18, Augmentation(), seed=3)[(2, 1)]
    for a, b in zip((image, target, weight), again):
        np.testing.assert_array_equal(a, b)
    others = [dataset[(3, 1)][0], COCOPose(subset_records[:4], R18, Augmentation(), seed=4)[(2, 1)][0]]
    assert all(np.abs(other - image).mean() > 0.01 for other in others)
    assert image.shape == (3, 256, 192) and target.shape == (17, 64, 48) and weight.shape == (17,)


def test_images_are_rgb_with_imagenet_statistics(tmp_path):
    red = np.zeros((480, 640, 3), np.uint8)
    red[..., 2] = 255  # BGR on disk
    _, ann = marked_person()
    ann_file, images = write_coco(tmp_path, [("red.png", red)], [ann])
    records = load_coco_persons(ann_file, images, R18.input_size, select=False)
    image, _, _ = COCOPose(records, R18, None)[0]
    expected = [(1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], -IMAGENET_MEAN[1] / IMAGENET_STD[1],
                -IMAGENET_MEAN[2] / IMAGENET_STD[2]]
    np.testing.assert_allclose(image[:, 128, 96], expected, rtol=1e-5)


def test_half_body_box_covers_the_chosen_half():
    joints = np.array([[100 + 5 * j, 50 + 20 * j] for j in range(17)], dtype=np.float64)
    visible = np.ones(17)
    halves = set()
    for seed in range(20):
        center, scale = half_body_box(joints, visible, R18.input_size, np.random.default_rng(seed))
        chosen = joints[:11] if center[1] < joints[11:, 1].min() else joints[11:]
        halves.add(len(chosen))
        np.testing.assert_allclose(center, chosen.mean(axis=0))
        # 1.5 x the joints' extent after the aspect fix
        assert scale[1] * 200 == pytest.approx(1.5 * (chosen[:, 1].max() - chosen[:, 1].min()))
    assert halves == {11, 6}
    assert half_body_box(joints, np.eye(17)[0], R18.input_size, np.random.default_rng(0)) is None


def test_sampler_order_derives_from_seed_and_epoch_and_resumes_mid_epoch():
    sampler = EpochBatchSampler(10, 3, seed=7)
    sampler.set_epoch(4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4
    assert sorted(i for batch in batches for _, i in batch) == list(range(10))
    assert all(epoch == 4 for batch in batches for epoch, _ in batch)
    sampler.set_epoch(4, start_batch=2)
    assert list(sampler) == batches[2:]
    sampler.set_epoch(5)
    assert list(sampler) != batches
    shards = [EpochBatchSampler(10, 2, seed=7, rank=r, world_size=3) for r in range(3)]
    for shard in shards:
        shard.set_epoch(4)
    seen = [i for shard in shards for batch in shard for _, i in batch]
    assert len(seen) == 12 and set(seen) == set(range(10))  # padded to a multiple of the world size


@pytest.mark.parametrize("num_samples", [24, 23, 17])
def test_ranks_batches_at_each_step_together_are_the_one_process_batch(num_samples):
    """Global batch 8 over 4 ranks of 2: disjoint shards whose union at step k is one process's batch k,
    and the same number of steps on every rank (an uneven count would deadlock the all-reduce)."""
    one = EpochBatchSampler(num_samples, 8, seed=5)
    ranks = [EpochBatchSampler(num_samples, 2, seed=5, rank=r, world_size=4) for r in range(4)]
    for sampler in (one, *ranks):
        sampler.set_epoch(3)
    one_batches = list(one)
    rank_batches = [list(sampler) for sampler in ranks]
    assert {len(batches) for batches in rank_batches} == {len(one_batches)}
    for step, batch in enumerate(one_batches):
        together = [index for batches in rank_batches for _, index in batches[step]]
        if len(batch) == 8:  # full steps: exactly the one-process batch, each index on one rank
            assert sorted(together) == sorted(i for _, i in batch)
        else:  # the epoch's last, short step: its samples plus padding from the epoch's start
            assert set(i for _, i in batch) <= set(together)


def fit_parser():
    parser = argparse.ArgumentParser()
    fit.add_arguments(parser)
    return parser


def test_debug_dump_writes_pngs(coco_subset, tmp_path):
    ann, images = coco_subset
    args = fit_parser().parse_args(["--config", "r18-256x192", "--ann", str(ann), "--images", str(images),
                                    "--debug-dump", str(tmp_path / "dump"), "3"])
    assert fit.run(args) == 0
    paths = sorted((tmp_path / "dump").glob("*.png"))
    assert len(paths) == 3
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        picture = cv2.imread(str(path))
        # crop scaled to the grid's height (640 * 192 / 256 = 480) beside 5 x 4 heatmaps at 2x (128 x 96)
        assert picture.shape == (640, 480 + 4 * 96, 3)
        assert picture[:, 480:].std() > 5  # the heatmap grid is not blank


def test_missing_annotation_file_is_named(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    args = fit_parser().parse_args(["--config", "r18-256x192", "--ann", str(missing), "--images", str(tmp_path)])
    assert fit.run(args) == 2
    assert f"annotation file {missing}: no such file" in capsys.readouterr().err


def test_missing_image_is_named(tmp_path, capsys):
    image, ann = marked_person()
    ann_file, images = write_coco(tmp_path, [("gone.jpg", None)], [ann])
    with pytest.raises(DatasetError, match="gone.jpg: no such file"):
        load_coco_persons(ann_file, images, R18.input_size)
    args = fit_parser().parse_args(["--config", "r18-256x192", "--ann", str(ann_file), "--images", str(images)])
    assert fit.run(args) == 2
    assert str(images / "gone.jpg") in capsys.readouterr().err


def test_wrong_keypoint_count_is_named(tmp_path):
    image, ann = marked_person()
    ann["keypoints"] = ann["keypoints"][:-3]
    ann_file, images = write_coco(tmp_path, [("a.png", image)], [ann])
    with pytest.raises(DatasetError, match="has 16 keypoints, expected 17"):
        load_coco_persons(ann_file, images, R18.input_size)


@pytest.mark.parametrize("layout", ["train2017", "images/train2017"])
def test_coco_root_layouts(tmp_path, layout):
    (tmp_path / layout).mkdir(parents=True)
    ann, images = coco_paths(tmp_path)
    assert ann == str(tmp_path / "annotations" / "person_keypoints_train2017.json")
    assert images == str(tmp_path / layout)
    with pytest.raises(DatasetError, match="no image folder"):
        coco_paths(tmp_path, split="val")
    with pytest.raises(DatasetError, match="not both"):
        coco_paths(tmp_path, ann="x.json")
