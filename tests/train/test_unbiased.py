"""UDP (`--target-encoding unbiased`): geometry, sub-pixel targets + DARK, exact flip test, oracle AP."""
import cv2
import numpy as np
import pytest

pytest.importorskip("paddle", reason="train needs PaddlePaddle: pip install -e '.[train]'")

from livepose.core.crops import crop_persons  # noqa: E402
from livepose.core.decode import decode_heatmaps  # noqa: E402
from livepose.core.geometry import get_affine_transforms, heatmap_to_frame, warp_points  # noqa: E402
from livepose.core.skeleton import NUM_KEYPOINTS, flip_permutation  # noqa: E402
from train import evaluate  # noqa: E402
from train.model import get_config  # noqa: E402
from train.targets import generate_targets  # noqa: E402

CONFIG = get_config("r18-256x192")


def test_unbiased_affine_puts_the_box_centre_on_the_middle_pixel():
    centers, scales = np.array([[300.0, 200.0], [50.0, 60.0]]), np.array([[1.5, 2.0], [0.6, 0.8]])
    height, width = CONFIG.input_size
    crop = get_affine_transforms(centers, scales, CONFIG.input_size, [0.0, 25.0], encoding="unbiased")
    np.testing.assert_allclose(warp_points(centers[:, None], crop)[:, 0], [[(width - 1) / 2, (height - 1) / 2]] * 2)
    # heatmap = crop * (w - 1)/(W - 1): the heatmap affine is the crop affine scaled per axis (unit lengths)
    h, w = CONFIG.heatmap_size
    heat = get_affine_transforms(centers, scales, CONFIG.heatmap_size, [0.0, 25.0], encoding="unbiased")
    ratio = np.array([(w - 1) / (width - 1), (h - 1) / (height - 1)])
    np.testing.assert_allclose(heat, crop * ratio[None, :, None], atol=1e-12)
    points = np.random.default_rng(0).uniform(0, 400, (2, 5, 2))
    back = heatmap_to_frame(warp_points(points, heat[:1].repeat(2, 0)), centers[:1].repeat(2, 0),
                            scales[:1].repeat(2, 0), CONFIG.heatmap_size, "unbiased")
    np.testing.assert_allclose(back, points, atol=1e-9)
    with pytest.raises(ValueError, match="encoding: expected one of"):
        get_affine_transforms(centers, scales, CONFIG.input_size, encoding="biased")


def test_unbiased_targets_and_dark_recover_joints_to_a_hundredth_of_a_heatmap_pixel():
    height, width = CONFIG.input_size
    h, w = CONFIG.heatmap_size
    rng = np.random.default_rng(0)
    joints = np.stack([rng.uniform(24, width - 24, (30, NUM_KEYPOINTS)),
                       rng.uniform(24, height - 24, (30, NUM_KEYPOINTS))], axis=2)  # crop px
    targets = np.stack([generate_targets(j, np.ones(NUM_KEYPOINTS), CONFIG.input_size, CONFIG.sigma,
                                         encoding="unbiased")[0] for j in joints])
    coords, _ = decode_heatmaps(targets, refine="dark", sigma=CONFIG.sigma)
    truth = joints * np.array([(w - 1) / (width - 1), (h - 1) / (height - 1)])
    error = np.abs(coords - truth).max()
    print(f"unbiased targets + DARK: max error {error:.2g} heatmap px over {joints[..., 0].size} joints")
    assert error < 0.01
    # the standard targets' integer centres lose up to half a heatmap pixel, whatever the decoding
    standard = np.stack([generate_targets(j, np.ones(NUM_KEYPOINTS), CONFIG.input_size, CONFIG.sigma)[0]
                         for j in joints])
    assert np.abs(decode_heatmaps(standard, refine="dark", sigma=CONFIG.sigma)[0] - joints / 4).max() > 0.3


def test_unbiased_flip_test_is_exact():
    """The crop mirrored about the middle pixel is the crop of the mirrored frame, pixel for pixel, and
    its target flipped back (columns reversed, left/right swapped, no shift) is the crop's target."""
    rng = np.random.default_rng(1)
    # smooth, so OpenCV's 1/32-pixel sampling grid (not mirror-symmetric) costs at most one grey level
    frame = cv2.GaussianBlur(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8), (0, 0), 4)
    centers, scales = np.array([[129.5, 150.0]]), np.array([[1.0, 4 / 3]])  # centre on the frame's middle column
    crops, affines = crop_persons(frame, centers, scales, CONFIG.input_size, encoding="unbiased")
    mirrored, mirrored_affines = evaluate.crop_mirrored(frame, centers, scales, CONFIG.input_size, "unbiased")
    of_mirrored_frame, _ = crop_persons(np.ascontiguousarray(frame[:, ::-1]), centers, scales, CONFIG.input_size,
                                        encoding="unbiased")
    assert np.abs(mirrored.astype(int) - of_mirrored_frame.astype(int)).max() <= 1
    np.testing.assert_array_equal(mirrored, crops[:, :, ::-1])

    joints = np.stack([rng.uniform(30, 230, NUM_KEYPOINTS), rng.uniform(30, 270, NUM_KEYPOINTS)], axis=1)
    visible = np.ones(NUM_KEYPOINTS)
    direct, _ = generate_targets(warp_points(joints, affines[0]), visible, CONFIG.input_size, CONFIG.sigma,
                                 encoding="unbiased")
    seen_mirrored = warp_points(joints, mirrored_affines[0])[flip_permutation()]
    rendered, _ = generate_targets(seen_mirrored, visible, CONFIG.input_size, CONFIG.sigma, encoding="unbiased")
    back = evaluate.flip_heatmaps_back(rendered[None], "unbiased")[0]
    np.testing.assert_allclose(back, direct, atol=1e-6)
    exact, _ = decode_heatmaps(direct[None], refine="dark", sigma=CONFIG.sigma)
    averaged, _ = decode_heatmaps(0.5 * (direct + back)[None], refine="dark", sigma=CONFIG.sigma)
    np.testing.assert_allclose(averaged, exact, atol=1e-9)


def test_training_samples_follow_the_unbiased_geometry(coco_subset):
    from train.dataset import Augmentation, COCOPose, load_coco_persons

    ann, images = coco_subset
    records = load_coco_persons(ann, images, CONFIG.input_size)[:6]
    dataset = COCOPose(records, CONFIG, Augmentation(flip_prob=1.0), seed=0, target_encoding="unbiased")
    h, w = CONFIG.heatmap_size
    height, width = CONFIG.input_size
    for index in range(len(dataset)):
        sample = dataset.sample(index)
        usable = (sample.weight > 0) & (sample.visible > 0)
        peaks, _ = decode_heatmaps(sample.target[None], refine="dark", sigma=CONFIG.sigma)
        truth = sample.joints * np.array([(w - 1) / (width - 1), (h - 1) / (height - 1)])
        inside = usable & np.all((truth > 6) & (truth < np.array([w, h]) - 7), axis=1)
        assert sample.flipped
        assert np.abs(peaks[0][inside] - truth[inside]).max() < 0.01


# Measured on ../shared/data/coco/coco_train2017_subset; see benchmarks/oracle_encodings.py
@pytest.mark.parametrize("config", ["r50-256x192", "r50-384x288"])
def test_unbiased_oracle_ap_is_at_least_the_standard_one(coco_subset, config):
    ann, images = coco_subset
    standard = evaluate.evaluate_oracle(get_config(config), ann, images)["AP"]
    unbiased = evaluate.evaluate_oracle(get_config(config), ann, images, target_encoding="unbiased")["AP"]
    print(f"{config}: oracle AP standard {standard:.4f}, unbiased {unbiased:.4f}")
    assert unbiased >= standard
