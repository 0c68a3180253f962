"""COCO person keypoints for training: the tutorial's COCOPose, with its bugs fixed.

The pipeline per person: bbox sanitising (`clean_bbox`), box -> center/scale with the aspect fix and
1.25 padding (`livepose.core.geometry.box_to_center_scale`, the code inference uses), the tutorial's
`_select_data` filter (it calls it unconditionally; HRNet only with SELECT_DATA), then at training
time half-body (HRNet/mmpose), random scale, rotation and horizontal flip, the affine crop of
`livepose.core.crops` (the inference warp) and Gaussian targets (`targets.generate_targets`).

Differences from the tutorial, on purpose:
- Colour: crops are RGB normalised with the ImageNet RGB mean/std. The tutorial fed cv2's BGR pixels
  through the RGB statistics.
- Sizes are (H, W); the tutorial's IMAGE_SIZE = [288, 384] and HEATMAP_SIZE = [72, 96] are [W, H].
- Randomness: every sample draws from its own generator seeded by (seed, epoch, index), and the batch
  order derives from (seed, epoch), so worker processes and resumed runs see the same stream.
- Image paths come from each image's `file_name`, so any COCO-format dataset loads the same way.
"""
import contextlib
import io
import os
from dataclasses import dataclass

import cv2
import numpy as np
import paddle

from livepose.core.crops import crop_persons, normalize_crops
from livepose.core.geometry import (
    PIXEL_STD,
    TARGET_ENCODINGS,
    box_to_center_scale,
    warp_points,
)
from livepose.core.skeleton import KEYPOINT_COLORS, KEYPOINT_NAMES, flip_permutation

from .targets import generate_targets

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB order
IMAGENET_STD = (0.229, 0.224, 0.225)
COLOR_ORDER = "RGB"
UPPER_BODY = tuple(range(11))  # nose .. wrists: HRNet's upper_body_ids


class DatasetError(ValueError):
    """An annotation file or image is missing or not what COCO keypoints look like."""


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation; defaults are the tutorial's (half-body is HRNet's/mmpose's)."""

    scale_factor: float = 0.3        # scale *= clip(N(0,1) * f + 1, 1 - f, 1 + f)
    rotation_factor: float = 40.0    # degrees: clip(N(0,1) * f, -2f, 2f) ...
    rotation_prob: float = 0.6       # ... with this probability, else 0
    flip_prob: float = 0.5
    half_body_prob: float = 0.3      # crop to the upper or lower body ...
    half_body_min_joints: int = 8    # ... of persons with more labelled joints than this
    half_body_padding: float = 1.5   # HRNet's margin around the half-body joints


@dataclass(frozen=True)
class PersonRecord:
    """One annotated person: joints (K, 2) frame px, visible (K,) 0/1, center and scale (2,) each."""

    image_path: str
    image_id: int
    annotation_id: int
    image_size: tuple   # (H, W) of the image
    center: np.ndarray
    scale: np.ndarray
    joints: np.ndarray
    visible: np.ndarray


@dataclass(frozen=True)
class Sample:
    """A prepared training sample. crop (H, W, 3) uint8 BGR; joints (K, 2) crop px; target (K, h, w)."""

    crop: np.ndarray
    joints: np.ndarray
    visible: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    affine: np.ndarray   # (2, 3) frame -> crop
    rotation: float
    flipped: bool


def coco_paths(data=None, ann=None, images=None, split="train"):
    """(annotation file, image folder) from `--data COCO_ROOT` or `--ann F --images DIR`.

    COCO_ROOT holds annotations/person_keypoints_{split}2017.json and the images either in
    {split}2017/ (the official archives' layout) or images/{split}2017/ (the tutorial's).
    """
    if data is not None and (ann is not None or images is not None):
        raise DatasetError("give either --data COCO_ROOT or --ann FILE --images DIR, not both")
    if data is None:
        if ann is None or images is None:
            raise DatasetError("expected --data COCO_ROOT, or both --ann FILE and --images DIR")
        return os.fspath(ann), os.fspath(images)
    ann = os.path.join(data, "annotations", f"person_keypoints_{split}2017.json")
    candidates = [os.path.join(data, f"{split}2017"), os.path.join(data, "images", f"{split}2017")]
    for folder in candidates:
        if os.path.isdir(folder):
            return ann, folder
    raise DatasetError(f"--data {data}: no image folder, expected one of {candidates}")


def clean_bbox(bbox, image_size):
    """The tutorial's bbox sanitising: clip x, y, w, h to the image (H, W); None if nothing is left."""
    height, width = image_size
    x, y, w, h = bbox
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 >= x1 and y2 >= y1:
        return np.array([x1, y1, x2 - x1, y2 - y1])
    return None


def select_data(records):
    """The tutorial's `_select_data`: keep persons whose labelled joints' mean lies near the box centre.

    ks = exp(-|joints mean - center|^2 / (2 * 0.2^2 * area)) with area of the padded box must exceed
    0.45 + 0.0125 * (labelled joints - 1): the more joints, the stricter.
    """
    kept = []
    for rec in records:
        num_vis = int((rec.visible > 0).sum())
        if num_vis == 0:
            continue
        joints_center = rec.joints[rec.visible > 0].mean(axis=0)
        area = rec.scale[0] * rec.scale[1] * PIXEL_STD**2
        ks = np.exp(-np.sum((joints_center - rec.center) ** 2) / (0.2**2 * 2.0 * area))
        if ks > (0.2 / 16) * num_vis + 0.45 - 0.2 / 16:
            kept.append(rec)
    return kept


def load_coco_persons(ann_file, images_dir, input_size, num_keypoints=17, select=True, check_images=True):
    """Non-crowd persons with at least one labelled keypoint and a non-empty box -> [PersonRecord].

    input_size: (H, W) of the network input (sets the box aspect). select: apply the tutorial's
    `_select_data`. check_images: fail now, naming the file, if an image is not on disk.
    """
    from pycocotools.coco import COCO

    ann_file, images_dir = os.fspath(ann_file), os.fspath(images_dir)
    if not os.path.isfile(ann_file):
        raise DatasetError(f"annotation file {ann_file}: no such file (expected COCO person keypoints JSON)")
    if not os.path.isdir(images_dir):
        raise DatasetError(f"image folder {images_dir}: no such directory")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco = COCO(ann_file)
    except (ValueError, KeyError, TypeError, AssertionError) as error:
        raise DatasetError(f"annotation file {ann_file}: not COCO-format JSON ({error!r})") from None
    person_ids = coco.getCatIds(catNms=["person"]) or coco.getCatIds()

    records = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        image_size = (info["height"], info["width"])
        for obj in coco.loadAnns(coco.getAnnIds(imgIds=image_id, catIds=person_ids, iscrowd=False)):
            keypoints = obj.get("keypoints")
            if not keypoints or max(keypoints) == 0:
                continue
            if len(keypoints) != 3 * num_keypoints:
                raise DatasetError(
                    f"annotation file {ann_file}: annotation {obj['id']} has {len(keypoints) // 3} keypoints, "
                    f"expected {num_keypoints}"
                )
            box = clean_bbox(obj["bbox"], image_size)
            if obj.get("area", 1) <= 0 or box is None:
                continue
            kps = np.asarray(keypoints, dtype=np.float64).reshape(num_keypoints, 3)
            center, scale = box_to_center_scale(box[None], input_size)
            records.append(PersonRecord(
                image_path=os.path.join(images_dir, info["file_name"]),
                image_id=image_id,
                annotation_id=obj["id"],
                image_size=image_size,
                center=center[0],
                scale=scale[0],
                joints=kps[:, :2],
                visible=np.minimum(kps[:, 2], 1.0),  # labelled (occluded or not) -> 1
            ))
    if select:
        records = select_data(records)
    if check_images:
        for path in sorted({rec.image_path for rec in records}):
            if not os.path.isfile(path):
                raise DatasetError(f"image {path}: no such file (referenced by {ann_file})")
    return records


def half_body_box(joints, visible, input_size, rng, padding=1.5):
    """HRNet's half-body crop: center (2,) and scale (2,) around the upper or lower body's joints, or None.

    The upper body is chosen with probability 1/2 (mmpose; HRNet compares randn() < 0.5, about 0.69)
    when it has more than 2 labelled joints, else the lower body if it has more than 2.
    """
    labelled = visible > 0
    upper_mask = np.zeros(len(joints), dtype=bool)
    upper_mask[list(UPPER_BODY)] = True
    upper, lower = joints[labelled & upper_mask], joints[labelled & ~upper_mask]
    if rng.random() < 0.5 and len(upper) > 2:
        chosen = upper
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return None
    top_left, bottom_right = chosen.min(axis=0), chosen.max(axis=0)
    box = np.concatenate([top_left, bottom_right - top_left])
    _, scale = box_to_center_scale(box[None], input_size, padding=padding)
    return chosen.mean(axis=0), scale[0]


def read_image(path):
    """(H0, W0, 3) uint8 BGR, EXIF orientation ignored as in the tutorial (COCO boxes use raw pixels)."""
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise DatasetError(f"image {path}: missing or not a readable image")
    return image


def sample_rng(seed, epoch, index):
    """The generator for one sample's augmentation: a pure function of (seed, epoch, index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, index]))


class COCOPose(paddle.io.Dataset):
    """Person crops, targets and joint weights. Indexed by `index` or by `(epoch, index)`.

    Yields image (3, H, W) float32 (RGB, ImageNet-normalised), target (K, h, w) float32, weight (K,) float32.
    augmentation: an `Augmentation`, or None for plain crops (validation, overfit checks).
    target_encoding: how crops and targets place joints (livepose.core.geometry.TARGET_ENCODINGS).
    """

    def __init__(self, records, config, augmentation=Augmentation(), seed=0, target_encoding="standard"):
        if target_encoding not in TARGET_ENCODINGS:
            raise DatasetError(f"target_encoding: expected one of {TARGET_ENCODINGS}, got {target_encoding!r}")
        self.target_encoding = target_encoding
        self.records = list(records)
        self.config = config
        self.augmentation = augmentation
        self.seed = seed
        self._flip = flip_permutation()

    def __len__(self):
        return len(self.records)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        sample = self.sample(index, epoch)
        image = normalize_crops(sample.crop[None], IMAGENET_MEAN, IMAGENET_STD, swap_channels=True)[0]
        return image, sample.target, sample.weight

    def sample(self, index, epoch=0):
        """The `Sample` for record `index` in `epoch`."""
        rec = self.records[index]
        image = read_image(rec.image_path)
        center, scale = rec.center.copy(), rec.scale.copy()
        joints, visible = rec.joints.copy(), rec.visible.copy()
        rotation, flipped = 0.0, False
        aug = self.augmentation
        if aug is not None:
            rng = sample_rng(self.seed, epoch, index)
            if (visible > 0).sum() > aug.half_body_min_joints and rng.random() < aug.half_body_prob:
                box = half_body_box(joints, visible, self.config.input_size, rng, aug.half_body_padding)
                if box is not None:
                    center, scale = box
            sf, rf = aug.scale_factor, aug.rotation_factor
            scale = scale * np.clip(rng.standard_normal() * sf + 1, 1 - sf, 1 + sf)
            rotation = float(np.clip(rng.standard_normal() * rf, -2 * rf, 2 * rf)) if rng.random() <= aug.rotation_prob else 0.0
            if rng.random() <= aug.flip_prob:
                # the tutorial's fliplr_joints: mirror x about the image, then swap left and right
                width = image.shape[1]
                image = np.ascontiguousarray(image[:, ::-1])
                joints[:, 0] = width - 1 - joints[:, 0]
                joints, visible = joints[self._flip], visible[self._flip]
                center[0] = width - 1 - center[0]
                flipped = True
        crops, affines = crop_persons(image, center[None], scale[None], self.config.input_size, [rotation],
                                      encoding=self.target_encoding)
        crop_joints = warp_points(joints, affines[0])
        target, weight = generate_targets(crop_joints, visible, self.config.input_size, self.config.sigma,
                                          encoding=self.target_encoding)
        return Sample(crops[0], crop_joints, visible, target, weight, affines[0], rotation, flipped)


class EpochBatchSampler(paddle.io.BatchSampler):
    """Batches of (epoch, index) whose order is a pure function of (seed, epoch).

    Like paddle.io.DistributedBatchSampler it pads the order to a multiple of world_size (repeating its
    start, so every rank takes the same number of steps: uneven counts would deadlock the all-reduce)
    and gives rank r every world_size-th index. With batch_size = global batch / world_size, the ranks'
    batches at step k together are exactly the one-process batch k of the global batch; unlike it, the order and the place in it (`start_batch`) can be
    set, so a resumed run continues mid-epoch with the same batches.
    """

    def __init__(self, num_samples, batch_size, seed=0, shuffle=True, rank=0, world_size=1, drop_last=False):
        if num_samples < 1:
            raise DatasetError("the dataset is empty: no person passed the filters")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.shuffle, self.rank, self.world_size, self.drop_last = shuffle, rank, world_size, drop_last
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch, start_batch=0):
        self.epoch, self.start_batch = epoch, start_batch

    def _per_rank(self):
        return -(-self.num_samples // self.world_size)

    def __len__(self):
        per_rank = self._per_rank()
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def epoch_order(self, epoch):
        """This rank's indices (M,) for `epoch`."""
        if self.shuffle:
            order = np.random.default_rng(np.random.SeedSequence([self.seed, epoch])).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        total = self._per_rank() * self.world_size
        order = np.concatenate([order, order[: total - len(order)]])
        return order[self.rank :: self.world_size]

    def __iter__(self):
        order = self.epoch_order(self.epoch)
        for b in range(self.start_batch, len(self)):
            yield [(self.epoch, int(i)) for i in order[b * self.batch_size : (b + 1) * self.batch_size]]


def render_debug(sample, heatmap_scale=2):
    """One BGR image: the crop with its joints, then the K target heatmaps (the tutorial's `visualize`)."""
    crop, target = sample.crop, sample.target
    k, h, w = target.shape
    cell_h, cell_w = h * heatmap_scale, w * heatmap_scale
    cols = 4
    rows = -(-k // cols)
    grid = np.zeros((rows * cell_h, cols * cell_w, 3), np.uint8)
    for j in range(k):
        heat = cv2.applyColorMap(np.uint8(np.clip(target[j], 0, 1) * 255), cv2.COLORMAP_JET)
        heat = cv2.resize(heat, (cell_w, cell_h), interpolation=cv2.INTER_NEAREST)
        cv2.putText(heat, KEYPOINT_NAMES[j] if j < len(KEYPOINT_NAMES) else str(j), (2, 10),
                    cv2.FONT_HERSHEY_PLAIN, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
        r, c = divmod(j, cols)
        grid[r * cell_h : (r + 1) * cell_h, c * cell_w : (c + 1) * cell_w] = heat
    zoom = grid.shape[0] / crop.shape[0]
    left = cv2.resize(crop, (round(crop.shape[1] * zoom), grid.shape[0]), interpolation=cv2.INTER_LINEAR)
    for j, ((x, y), vis, wt) in enumerate(zip(sample.joints, sample.visible, sample.weight)):
        if vis > 0 and wt > 0:
            colour = KEYPOINT_COLORS[j] if j < len(KEYPOINT_COLORS) else (255, 255, 255)
            cv2.circle(left, (round(x * zoom), round(y * zoom)), 4, colour, -1, cv2.LINE_AA)
    return np.concatenate([left, grid], axis=1)


def write_debug_png(path, sample):
    """Write `render_debug(sample)` as a PNG at `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(os.fspath(path), render_debug(sample)):
        raise OSError(f"debug dump {path}: OpenCV could not write the PNG")


def dump_debug(dataset, out_dir, count, epoch=0):
    """Write the first `count` samples of `epoch` as out_dir/sample_{index}.png; returns their paths."""
    paths = []
    for index in range(min(count, len(dataset))):
        path = os.path.join(out_dir, f"sample_{index:05d}.png")
        write_debug_png(path, dataset.sample(index, epoch))
        paths.append(path)
    return paths

