"""`python -m train evaluate`: COCO keypoint AP/AR of a checkpoint, an ONNX model or the ground-truth oracle.

Top-down, as SimpleBaselines/HRNet evaluate: person boxes (ground truth or a COCO detection file) ->
crops -> heatmaps (optionally averaged with the flipped crop's) -> decode -> warp back -> rescoring ->
OKS-NMS per image -> pycocotools COCOeval (iouType "keypoints"). Crops, decode and warp-back are the
runtime's own functions (livepose.core.crops / decode / geometry), so the AP measured here is the AP of what
`livepose` runs.
"""
import contextlib
import io
import json
import numbers
import os
import sys
from dataclasses import dataclass

import cv2
import numpy as np

from livepose.core.coco import rescore
from livepose.core.crops import crop_persons, model_input
from livepose.core.decode import DEFAULT_REFINE, REFINEMENTS, decode_heatmaps
from livepose.core.geometry import (
    PIXEL_STD,
    TARGET_ENCODINGS,
    box_to_center_scale,
    heatmap_to_frame,
    warp_points,
)
from livepose.core.metadata import ModelMetadataError, PoseModelMeta
from livepose.core.skeleton import NUM_KEYPOINTS, OKS_SIGMAS, flip_permutation
from livepose.files import write_atomic
from livepose.runtime.backends import BackendUnavailable
from livepose.runtime.open_model import open_model

from .checkpoint import CheckpointError
from .dataset import COLOR_ORDER, DatasetError, load_coco_persons
from .model import CONFIGS, get_config
from .targets import generate_targets

PERSON_CATEGORY = 1
# pycocotools' COCOeval.summarize() order for iouType "keypoints" (_summarizeKps, maxDets 20)
METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
OKS_NMS_THRESHOLD = 0.9   # SimpleBaselines' oks_thre


class EvaluationError(ValueError):
    """Bad evaluation input: a missing or malformed annotation, image or detection file, or a bad setting."""


@dataclass(frozen=True)
class EvalSettings:
    """How to evaluate: which person boxes, flip test, sub-pixel decode, batching, what to write."""

    boxes: str = None                 # None: ground-truth boxes (HRNet's validation); else a COCO detection file
    box_score_threshold: float = 0.0  # SimpleBaselines keeps every detection; COCOeval's maxDets 20 cuts the tail
    flip: bool = False                # off: the runtime does not flip, so the AP is the runtime's
    refine: str = None                # None: the model's encoding's (quarter for standard, dark for unbiased), as the runtime
    batch_size: int = 32              # crops per network call: fills a GPU, bounds memory on CPU
    results_out: str = None           # where to write the COCO results JSON (atomically); None: nowhere
    progress: bool = False            # a progress bar on stderr; the CLI turns it on for a terminal

    def __post_init__(self):
        if self.refine is not None and self.refine not in REFINEMENTS:
            raise EvaluationError(f"refine: expected one of {REFINEMENTS}, got {self.refine!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, numbers.Integral) or self.batch_size < 1:
            raise EvaluationError(f"batch_size (--batch-size): expected a positive integer, got {self.batch_size!r}")
        if isinstance(self.box_score_threshold, bool) or not isinstance(self.box_score_threshold, numbers.Real):
            raise EvaluationError(
                f"box_score_threshold (--box-score-threshold): expected a number, got {self.box_score_threshold!r}"
            )


def fit_model_meta(config, color_order=COLOR_ORDER, target_encoding="standard"):
    """What a network `fit` trained takes: crops in `color_order`, ImageNet-normalised (PoseModelMeta's
    defaults, as train.dataset normalises), the config's target sigma for DARK, and how its targets were placed."""
    return PoseModelMeta(architecture=config.architecture, config=config.name, input_size=config.input_size,
                         heatmap_size=config.heatmap_size, color_order=color_order, sigma=config.sigma,
                         target_encoding=target_encoding)


@dataclass(frozen=True)
class Persons:
    """N person crops to evaluate, grouped by image.

    image_ids (N,) int64; centers, scales (N, 2) (livepose.core.geometry.box_to_center_scale); box_scores (N,);
    keypoints (N, K, 3) ground-truth x, y, labelled (0/1), or None for detector boxes.
    """

    image_ids: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray = None

    def __len__(self):
        return len(self.image_ids)


# ---------------------------------------------------------------------------------------------------
# input files


def load_coco(ann_file):
    """pycocotools COCO of a keypoint annotation file; EvaluationError naming the file if unusable."""
    from pycocotools.coco import COCO

    ann_file = os.fspath(ann_file)
    if not os.path.isfile(ann_file):
        raise EvaluationError(f"annotation file {ann_file}: no such file")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            coco = COCO(ann_file)
    except (ValueError, KeyError, TypeError, AssertionError, UnicodeDecodeError) as error:
        raise EvaluationError(
            f"annotation file {ann_file}: not a COCO keypoint annotation file ({type(error).__name__}: {error})"
        ) from None
    if "images" not in coco.dataset or "annotations" not in coco.dataset:
        raise EvaluationError(f"annotation file {ann_file}: expected 'images' and 'annotations' lists")
    return coco


def ground_truth_persons(ann_file, images_dir, input_size):
    """Ground-truth persons exactly as training crops them (train.dataset.load_coco_persons: non-crowd,
    labelled keypoints, sanitised box; without the training-only `_select_data` filter, as HRNet
    validates). Returns Persons (box score 1) and {image id: file path}, each image checked on disk."""
    records = load_coco_persons(ann_file, images_dir, input_size, num_keypoints=NUM_KEYPOINTS, select=False)
    if not records:
        raise EvaluationError(f"annotation file {os.fspath(ann_file)}: no non-crowd person with keypoints")
    persons = Persons(
        np.array([r.image_id for r in records], dtype=np.int64),
        np.stack([r.center for r in records]),
        np.stack([r.scale for r in records]),
        np.ones(len(records)),
        # (N, K, 2) joints and (N, K, 1) labelled -> (N, K, 3)
        np.concatenate([np.stack([r.joints for r in records]), np.stack([r.visible for r in records])[..., None]], axis=2),
    )
    return persons, {r.image_id: r.image_path for r in records}


def load_detections(det_file, coco, input_size, score_threshold=0.0):
    """Person boxes from a COCO-format detection results file: a JSON list of
    {image_id, category_id, bbox [x, y, w, h], score}. Keeps category 1 with score >= score_threshold,
    positive width and height, on images the annotation file has. Returns Persons (keypoints None)."""
    det_file = os.fspath(det_file)
    if not os.path.isfile(det_file):
        raise EvaluationError(f"detections file {det_file}: no such file")
    expected = "a JSON list of {image_id, category_id, bbox [x, y, w, h], score}"
    try:
        with open(det_file, encoding="utf-8") as f:
            entries = json.load(f)
    except (ValueError, UnicodeDecodeError) as error:
        raise EvaluationError(f"detections file {det_file}: not JSON ({error}); expected {expected}") from None
    if not isinstance(entries, list):
        raise EvaluationError(f"detections file {det_file}: expected {expected}, got a JSON {type(entries).__name__}")
    known_images = set(coco.getImgIds())
    image_ids, boxes, scores = [], [], []
    for index, entry in enumerate(entries):
        try:
            category, image_id, score = entry["category_id"], int(entry["image_id"]), float(entry["score"])
            box = np.asarray(entry["bbox"], dtype=np.float64)
            if box.shape != (4,) or not np.isfinite(box).all() or not np.isfinite(score):
                raise ValueError(f"bbox {entry['bbox']!r}")
        except (TypeError, KeyError, ValueError) as error:
            raise EvaluationError(
                f"detections file {det_file}: entry {index} is malformed ({type(error).__name__}: {error}); expected {expected}"
            ) from None
        if category != PERSON_CATEGORY or score < score_threshold or box[2] <= 0 or box[3] <= 0:
            continue
        if image_id not in known_images:
            continue  # a detection file for the full split evaluated on a subset of its images
        image_ids.append(image_id)
        boxes.append(box)
        scores.append(score)
    order = np.argsort(np.asarray(image_ids, dtype=np.int64), kind="stable")
    centers, scales = box_to_center_scale(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[order], input_size)
    return Persons(np.asarray(image_ids, dtype=np.int64)[order], centers, scales, np.asarray(scores)[order])


def image_paths(coco, images_dir, image_ids, ann_file):
    """image id -> file path for each id; EvaluationError naming the first file missing on disk."""
    images_dir = os.fspath(images_dir)
    if not os.path.isdir(images_dir):
        raise EvaluationError(f"images folder {images_dir}: no such folder")
    paths = {}
    for image_id in np.unique(image_ids):
        path = os.path.join(images_dir, coco.imgs[int(image_id)]["file_name"])
        if not os.path.isfile(path):
            raise EvaluationError(f"image {path} (image_id {int(image_id)} in {os.fspath(ann_file)}): no such file")
        paths[int(image_id)] = path
    return paths


# ---------------------------------------------------------------------------------------------------
# flip test


def crop_mirrored(frame, centers, scales, input_size, encoding="standard"):
    """Crops (N, H, W, 3) mirrored about the box centre and their frame -> crop affines (N, 2, 3).

    Unbiased (UDP): the centre is the middle pixel (W - 1)/2, so reversing the columns is the mirror.
    Standard:
    The tutorial's affine puts the box centre at x = W/2, not at the middle pixel (W - 1)/2, so x = W/2
    is the mirror line for which the mirrored crop is the crop of the mirrored frame, as training's flip
    augmentation makes it: x' = W - x. Column reversal alone (SimpleBaselines) gives x' = W - 1 - x, so
    crop the box moved right by one crop pixel first, then reverse the columns.
    """
    centers = np.asarray(centers, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    width = input_size[1]
    if encoding == "standard":
        crop_pixel = scales[:, 0] * PIXEL_STD / width  # frame px per crop px (the width sets the zoom)
        centers = centers + np.stack([crop_pixel, np.zeros_like(crop_pixel)], axis=1)
    crops, affines = crop_persons(frame, centers, scales, input_size, encoding=encoding)
    # column reversal x -> W - 1 - x composed with the shifted crop's affine
    affines[:, 0] *= -1.0
    affines[:, 0, 2] += width - 1
    return np.ascontiguousarray(crops[:, :, ::-1]), affines


def flip_heatmaps_back(heatmaps, encoding="standard"):
    """Heatmaps (N, K, h, w) of `crop_mirrored` crops -> heatmaps of the unmirrored crops.

    Unbiased (UDP): the heatmap's middle (w - 1)/2 is the crop's, so reversed columns, left/right
    swapped, are exact. Standard, crops mirrored about x = W/2:
    A joint at crop x sits at x' = W - x in the mirrored crop; its heatmap peak is at u' = x'/4 = w - u.
    Reversing the columns moves column u' to w - 1 - u' = u - 1, so the reversed map is one heatmap pixel
    left of the original: shift it one pixel right (SimpleBaselines' shift). Left/right joints swap.
    With the mirror made by column reversal alone (x' = W - 1 - x, what SimpleBaselines feeds) the same
    shift leaves the flipped branch 1/4 heatmap px (one input px) to the right; `crop_mirrored` avoids that.
    """
    back = heatmaps[:, flip_permutation(), :, ::-1]
    if encoding == "unbiased":
        return np.ascontiguousarray(back)
    shifted = np.empty_like(back)
    shifted[..., 1:] = back[..., :-1]
    shifted[..., 0] = back[..., 0]  # nothing is known left of column 0; keep the reversed edge
    return shifted


# ---------------------------------------------------------------------------------------------------
# rescoring and OKS-NMS


def oks_matrix(keypoints, areas, sigmas=OKS_SIGMAS):
    """Pairwise OKS (N, N) of N poses as SimpleBaselines' oks_iou: all K joints, area = mean of the two.

    keypoints (N, K, 2) frame px; areas (N,) px^2.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    variances = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    # (N, 1, K, 2) - (1, N, K, 2) -> (N, N, K)
    squared = ((keypoints[:, None] - keypoints[None]) ** 2).sum(axis=3)
    mean_area = (areas[:, None] + areas[None]) / 2.0 + np.spacing(1)
    return np.exp(-squared / variances / mean_area[:, :, None] / 2.0).mean(axis=2)


def oks_nms(keypoints, scores, areas, threshold=OKS_NMS_THRESHOLD, sigmas=OKS_SIGMAS):
    """Greedy OKS non-maximum suppression. keypoints (N, K, 2), scores (N,), areas (N,).

    Returns the kept indices (M,), best score first: a pose is dropped when its OKS with a kept,
    higher-scored pose exceeds threshold.
    """
    scores = np.asarray(scores, dtype=np.float64)
    oks = oks_matrix(keypoints, areas, sigmas)
    suppressed = np.zeros(len(scores), dtype=bool)
    keep = []
    for index in np.argsort(-scores, kind="stable"):
        if not suppressed[index]:
            keep.append(index)
            suppressed |= oks[index] > threshold
    return np.asarray(keep, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------
# prediction


def predict_keypoints(heatmap_fn, persons, paths, config, settings=EvalSettings(), model_meta=None):
    """Keypoints of every person: crops -> heatmap_fn -> (flip average) -> decode -> warp back.

    heatmap_fn(batch (B, 3, H, W) float32, affines (B, 2, 3) frame -> crop, person indices (B,))
    -> heatmaps (B, K, h, w). model_meta: the PoseModelMeta that says how crops become `batch` and
    which sigma DARK decodes with; None: fit_model_meta(config). Returns keypoints (N, K, 2) frame px
    and scores (N, K).
    """
    model_meta = fit_model_meta(config) if model_meta is None else model_meta
    encoding = model_meta.target_encoding
    refine = settings.refine or DEFAULT_REFINE[encoding]
    keypoints = np.zeros((len(persons), NUM_KEYPOINTS, 2))
    scores = np.zeros((len(persons), NUM_KEYPOINTS), dtype=np.float32)
    for indices, batch, affines, *mirror in _image_groups(persons, paths, config, settings, model_meta):
        heatmaps = _network_heatmaps(heatmap_fn, batch, affines, indices, config, settings.batch_size)
        if settings.flip:
            mirrored = _network_heatmaps(heatmap_fn, *mirror, indices, config, settings.batch_size)
            heatmaps = 0.5 * (heatmaps + flip_heatmaps_back(mirrored, encoding))
        coords, peak = decode_heatmaps(heatmaps, refine=refine, sigma=model_meta.sigma)
        keypoints[indices] = heatmap_to_frame(coords, persons.centers[indices], persons.scales[indices],
                                              tuple(config.heatmap_size), encoding)
        scores[indices] = peak
    return keypoints, scores


def _image_groups(persons, paths, config, settings, model_meta):
    """Model inputs of whole images, grouped until a group holds at least settings.batch_size persons
    (the last one may hold fewer). Yields (person indices (B,), inputs (B, 3, H, W), affines (B, 2, 3)),
    with settings.flip followed by the mirrored crops' inputs and affines."""
    pending, count = [], 0
    for start, stop in _image_spans(persons, settings.progress):
        path = paths[int(persons.image_ids[start])]
        pending.append(_image_inputs(path, persons, np.arange(start, stop), config, settings.flip, model_meta))
        count += stop - start
        if count >= settings.batch_size:
            yield tuple(np.concatenate(column) for column in zip(*pending))
            pending, count = [], 0
    if pending:
        yield tuple(np.concatenate(column) for column in zip(*pending))


def _image_spans(persons, progress):
    """(start, stop) of each image's persons (Persons are grouped by image), through a tqdm bar if progress."""
    if len(persons) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, persons.image_ids[1:] != persons.image_ids[:-1]])
    spans = list(zip(starts, np.r_[starts[1:], len(persons)]))
    if progress:
        from tqdm import tqdm

        spans = tqdm(spans, desc="evaluate", unit="img", file=sys.stderr)
    return spans


def _image_inputs(path, persons, indices, config, flip, model_meta):
    """One image's persons (indices (n,)) -> (indices, inputs (n, 3, H, W), affines (n, 2, 3)), with flip
    followed by the mirrored crops' inputs and affines."""
    frame = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)  # BGR, as model_input expects
    if frame is None:
        raise EvaluationError(f"image {path}: not a readable image")
    input_size = tuple(config.input_size)
    centers, scales = persons.centers[indices], persons.scales[indices]
    encoding = model_meta.target_encoding
    crops, affines = crop_persons(frame, centers, scales, input_size, encoding=encoding)
    inputs = (indices, model_input(crops, model_meta), affines)
    if flip:
        mirrored, mirrored_affines = crop_mirrored(frame, centers, scales, input_size, encoding)
        inputs += (model_input(mirrored, model_meta), mirrored_affines)
    return inputs


def _network_heatmaps(heatmap_fn, batch, affines, indices, config, batch_size):
    """heatmap_fn on at most batch_size crops a call -> heatmaps (B, K, h, w) float32, shape checked."""
    heatmap_size = tuple(config.heatmap_size)
    heatmaps = np.concatenate([
        np.asarray(heatmap_fn(batch[i : i + batch_size], affines[i : i + batch_size], indices[i : i + batch_size]),
                   dtype=np.float32)
        for i in range(0, len(batch), batch_size)
    ])
    if heatmaps.shape[0] != len(batch) or tuple(heatmaps.shape[2:]) != heatmap_size:
        raise EvaluationError(
            f"model output: expected heatmaps of shape ({len(batch)}, K, {heatmap_size[0]}, {heatmap_size[1]}) "
            f"for config {config.name}, got {heatmaps.shape}"
        )
    return heatmaps


def oracle_heatmap_fn(persons, config, encoding="standard"):
    """A heatmap_fn that ignores the pixels and renders the training targets of the ground truth:
    joints warped into each crop with its own affine, unlabelled joints flat zero (score 0)."""
    if persons.keypoints is None:
        raise EvaluationError("--oracle needs ground-truth boxes: it cannot be combined with --boxes")

    swap = np.asarray(flip_permutation())

    def render(batch, affines, indices):
        joints = warp_points(persons.keypoints[indices, :, :2], affines)  # (B, K, 2) crop px
        visible = persons.keypoints[indices, :, 2]
        # in a mirrored crop (negative determinant) a left joint looks like a right one, as training's
        # flip augmentation labels it: render what a perfect network would
        mirrored = np.linalg.det(affines[:, :, :2]) < 0
        joints[mirrored] = joints[mirrored][:, swap]
        visible = np.where(mirrored[:, None], visible[:, swap], visible)
        return np.stack([
            generate_targets(j, v, config.input_size, config.sigma, encoding=encoding)[0]
            for j, v in zip(joints, visible)
        ])

    return render


# ---------------------------------------------------------------------------------------------------
# results and COCOeval


def coco_results(persons, keypoints, keypoint_scores):
    """Rescore, OKS-NMS per image, and COCO keypoint results: a list of
    {image_id, category_id 1, keypoints [x, y, s] * K flat, score}."""
    person_scores = rescore(persons.box_scores, keypoint_scores)
    areas = persons.scales[:, 0] * persons.scales[:, 1] * PIXEL_STD**2  # SimpleBaselines' NMS area: the padded box
    results = []
    for image_id in np.unique(persons.image_ids):
        members = np.flatnonzero(persons.image_ids == image_id)
        kept = members[oks_nms(keypoints[members], person_scores[members], areas[members])]
        for index in kept:
            # (K, 2) + (K, 1) -> (K, 3) -> flat x, y, s per joint
            flat = np.concatenate([keypoints[index], keypoint_scores[index, :, None]], axis=1).ravel()
            results.append({
                "image_id": int(image_id),
                "category_id": PERSON_CATEGORY,
                "keypoints": [round(float(v), 4) for v in flat],
                "score": round(float(person_scores[index]), 6),
            })
    return results


def coco_keypoint_metrics(coco, results):
    """The 10 COCOeval keypoint summary numbers by name (METRIC_NAMES) for results on `coco`."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            detections = coco.loadRes([dict(r) for r in results])  # loadRes adds fields in place
        else:  # loadRes refuses an empty list; no predictions is AP 0, not an error
            detections = COCO()
            detections.dataset = {"images": coco.dataset["images"], "annotations": [],
                                  "categories": coco.dataset.get("categories", [])}
            detections.createIndex()
        evaluator = COCOeval(coco, detections, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(OKS_SIGMAS)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats)}


def _evaluate(heatmap_fn_for, config, ann_file, images_dir, settings, model_meta):
    """heatmap_fn_for(persons) -> the heatmap_fn predict_keypoints calls for those persons."""
    coco = load_coco(ann_file)
    if settings.boxes is None:
        persons, paths = ground_truth_persons(ann_file, images_dir, config.input_size)
    else:
        persons = load_detections(settings.boxes, coco, config.input_size, settings.box_score_threshold)
        paths = image_paths(coco, images_dir, persons.image_ids, ann_file)
    keypoints, keypoint_scores = predict_keypoints(heatmap_fn_for(persons), persons, paths, config, settings,
                                                   model_meta)
    results = coco_results(persons, keypoints, keypoint_scores)
    if settings.results_out is not None:
        write_atomic(settings.results_out, json.dumps(results).encode("utf-8"))
    return coco_keypoint_metrics(coco, results)


def evaluate_model(predict_fn, config, ann_file, images_dir, settings=EvalSettings(), model_meta=None):
    """COCO keypoint AP/AR of a pose network.

    predict_fn: float32 (B, 3, H, W) model inputs -> heatmaps (B, K, h, w) (numpy or anything np.asarray
    takes). config: a PoseConfig (input/heatmap size). model_meta: the PoseModelMeta that says what
    predict_fn takes (colour order, normalisation) and its sigma; None: a network `fit` trained
    (fit_model_meta). Returns {name: value} for METRIC_NAMES.
    """
    return _evaluate(lambda persons: lambda batch, affines, indices: predict_fn(batch), config, ann_file,
                     images_dir, settings, model_meta)


def evaluate_oracle(config, ann_file, images_dir, settings=EvalSettings(), target_encoding="standard"):
    """COCO keypoint AP of the ground truth rendered as training targets of `target_encoding` (no network):
    a check of the crop, target, decode and warp-back geometry. Ground-truth boxes only."""
    return _evaluate(lambda persons: oracle_heatmap_fn(persons, config, target_encoding), config, ann_file,
                     images_dir, settings, fit_model_meta(config, target_encoding=target_encoding))


def paddle_predict_fn(model):
    """predict_fn for a Paddle PoseNet, without gradients; the caller puts the model in eval mode."""
    import paddle

    def predict(batch):
        with paddle.no_grad():
            return model(paddle.to_tensor(batch)).numpy()

    return predict


# ---------------------------------------------------------------------------------------------------
# command line


def add_arguments(parser):
    parser.add_argument("--config", required=True, choices=sorted(CONFIGS), help="model configuration")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="livepose-train checkpoint (.safetensors) run with Paddle")
    source.add_argument("--model", help="exported ONNX pose model run with ONNX Runtime")
    source.add_argument("--oracle", action="store_true",
                        help="no network: ground-truth heatmaps rendered like training targets (geometry self-check)")
    parser.add_argument("--ann", required=True, help="COCO person_keypoints JSON")
    parser.add_argument("--images", required=True, help="folder with the annotation file's images")
    parser.add_argument("--boxes", help="COCO-format person detections JSON (default: ground-truth boxes)")
    parser.add_argument("--box-score-threshold", type=float, default=0.0,
                        help="drop detections scored below this (default 0, as SimpleBaselines)")
    parser.add_argument("--flip", action="store_true", help="average with the mirrored crop's heatmaps")
    parser.add_argument("--refine", choices=REFINEMENTS,
                        help="sub-pixel decode (default: the model's: quarter for standard targets, dark for unbiased)")
    parser.add_argument("--target-encoding", choices=TARGET_ENCODINGS,
                        help="with --oracle: the targets to render (default standard); a checkpoint or model "
                             "says its own")
    parser.add_argument("--results-out", help="write the COCO keypoint results JSON here")
    parser.add_argument("--metrics-out", required=True, help="write the 10 COCOeval numbers by name here (JSON)")
    parser.add_argument("--batch-size", type=int, default=32, help="crops per network call (default 32)")


def _onnx_source(path, config):
    """An exported model run with ONNX Runtime -> (predict_fn, its PoseModelMeta from the file)."""
    try:
        opened = open_model(path, backend="onnxruntime")
    except (FileNotFoundError, ValueError) as error:  # a missing, unreadable or undescribed model
        raise EvaluationError(str(error)) from None
    for name in ("input_size", "heatmap_size"):
        if tuple(getattr(opened.meta, name)) != tuple(getattr(config, name)):
            opened.backend.close()
            raise EvaluationError(
                f"model {path}: {name} {tuple(getattr(opened.meta, name))} does not match config {config.name} "
                f"({tuple(getattr(config, name))})"
            )
    return opened.backend.run, opened.meta


def _checkpoint_source(path, config):
    """A fit checkpoint run with Paddle -> (predict_fn, PoseModelMeta of the colour order it was trained in)."""
    from .checkpoint import load_checkpoint, load_model_state
    from .model import build_model

    state, meta = load_checkpoint(path, expected_config=config.name)
    model = build_model(config)
    load_model_state(model, state, source=f"checkpoint {path}")
    model.eval()
    return paddle_predict_fn(model), fit_model_meta(config, meta.color_order, meta.target_encoding)


def run(args):
    try:
        config = get_config(args.config)
        settings = EvalSettings(boxes=args.boxes, box_score_threshold=args.box_score_threshold, flip=args.flip,
                                refine=args.refine, batch_size=args.batch_size, results_out=args.results_out,
                                progress=sys.stderr.isatty())
        if args.oracle:
            if args.boxes:
                raise EvaluationError("--oracle renders the ground truth of ground-truth boxes; drop --boxes")
            metrics = evaluate_oracle(config, args.ann, args.images, settings, args.target_encoding or "standard")
        else:
            if args.target_encoding:
                raise EvaluationError("--target-encoding is for --oracle: a checkpoint or model says its own")
            if args.model:
                predict, model_meta = _onnx_source(args.model, config)
            else:
                predict, model_meta = _checkpoint_source(args.checkpoint, config)
            metrics = evaluate_model(predict, config, args.ann, args.images, settings, model_meta)
        write_atomic(args.metrics_out, (json.dumps(metrics, indent=2) + "\n").encode("utf-8"))
    except (EvaluationError, DatasetError, CheckpointError, ModelMetadataError, BackendUnavailable, OSError) as error:
        print(f"livepose-train evaluate: error: {error}", file=sys.stderr)
        return 2
    for name in METRIC_NAMES:
        print(f"{name:5s} {metrics[name]:.4f}")
    print(f"metrics written to {args.metrics_out}" + (f", results to {args.results_out}" if args.results_out else ""))
    return 0
