"""How closely one pose (or detector) runtime's output follows a reference one on the same inputs.

Used wherever a model is changed for speed and must keep its answers: FP16 and INT8 against
FP32, a TensorRT engine against ONNX Runtime, tracked poses against detected ones (OKS).
Pure numpy: a "backend" here is any object whose `.run(batch)` returns the output array.

Keypoints only mean something for trained weights: for random weights (flat heatmaps) only the
heatmaps' relative error is a meaningful measure.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np

from livepose.core.decode import decode_heatmaps
from livepose.core.geometry import BOX_PADDING
from livepose.core.skeleton import OKS_SIGMAS

OKS_LIMIT = 0.99               # mean OKS test vs reference below this fails (trained weights)
HEATMAP_REL_ERROR_LIMIT = 1e-2  # random weights: ~1e-3 is what FP16 rounding gives; 10x that is broken


@dataclass(frozen=True)
class Agreement:
    """How closely test heatmaps (e.g. FP16) follow reference ones (FP32) on the same N crops.

    Keypoint figures are None when the weights are random: their keypoints mean nothing.
    Keypoint distances are in network-input (crop) pixels; OKS uses the person box inside the
    crop (the crop divided by the crop padding) as the object area and COCO's sigmas.
    """

    num_crops: int
    heatmap_rel_error: float         # ||test - ref|| / ||ref|| over the whole batch
    heatmap_max_abs_error: float
    keypoint_mean_px: float | None = None
    keypoint_max_px: float | None = None
    mean_oks: float | None = None
    output: str = "heatmap"          # what was compared: "heatmap", or "detector output"

    @property
    def compares_keypoints(self):
        return self.mean_oks is not None

    @property
    def passed(self):
        if self.compares_keypoints:
            return self.mean_oks >= OKS_LIMIT
        return math.isfinite(self.heatmap_rel_error) and self.heatmap_rel_error <= HEATMAP_REL_ERROR_LIMIT

    def summary(self):
        heatmaps = f"{self.output} relative error {self.heatmap_rel_error:.2e}, max abs {self.heatmap_max_abs_error:.3g}"
        if self.output != "heatmap":
            return f"{self.num_crops} inputs: {heatmaps} (limit {HEATMAP_REL_ERROR_LIMIT:.0e})"
        if not self.compares_keypoints:
            return (
                f"{self.num_crops} crops: {heatmaps} (limit {HEATMAP_REL_ERROR_LIMIT:.0e}); "
                "keypoints not compared (random weights: they mean nothing)"
            )
        return (
            f"{self.num_crops} crops: keypoint deviation mean {self.keypoint_mean_px:.3f} px, "
            f"max {self.keypoint_max_px:.3f} px, mean OKS {self.mean_oks:.4f} (limit {OKS_LIMIT}); {heatmaps}"
        )

    def to_dict(self):
        return {**asdict(self), "passed": self.passed}


def heatmap_errors(reference, test):
    """(N, K, h, w) twice -> (relative L2 error over the batch, max absolute error)."""
    reference = np.asarray(reference, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if reference.shape != test.shape:
        raise ValueError(f"heatmaps: expected equal shapes, got reference {reference.shape} and test {test.shape}")
    difference = test - reference
    norm = np.linalg.norm(reference)
    relative = float(np.linalg.norm(difference) / norm) if norm > 0 else float("inf")
    return relative, float(np.abs(difference).max()) if difference.size else 0.0


def keypoint_oks(reference, test, area, sigmas=OKS_SIGMAS):
    """COCO object keypoint similarity of test keypoints against reference ones.

    reference, test: (N, K, 2) in pixels; area: object area in pixels squared (scalar or (N,));
    sigmas: (K,). Every keypoint counts (both sets are predictions: none is invisible).
    Returns (N,) OKS in [0, 1].
    """
    reference = np.asarray(reference, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if reference.shape != test.shape or reference.ndim != 3 or reference.shape[1:] != (len(sigmas), 2):
        raise ValueError(
            f"keypoints: expected two (N, {len(sigmas)}, 2) arrays, got {reference.shape} and {test.shape}"
        )
    squared = ((test - reference) ** 2).sum(axis=2)  # (N, K)
    variances = (2 * sigmas) ** 2  # COCOeval's vars
    area = np.broadcast_to(np.asarray(area, dtype=np.float64), (len(reference),))[:, None]
    return np.exp(-squared / variances / (2 * area)).mean(axis=1)


def compare_heatmaps(reference, test, model_meta):
    """Agreement of test heatmaps with reference ones from the same crops, both (N, K, h, w).

    model_meta (PoseModelMeta) gives the input and heatmap sizes and whether the weights are
    trained; only trained weights get keypoint figures.
    """
    relative, max_abs = heatmap_errors(reference, test)
    if not model_meta.trained:
        return Agreement(len(reference), relative, max_abs)
    ref_coords, _ = decode_heatmaps(reference, sigma=model_meta.sigma)
    test_coords, _ = decode_heatmaps(test, sigma=model_meta.sigma)
    (in_h, in_w), (hm_h, hm_w) = model_meta.input_size, model_meta.heatmap_size
    stride = np.array([in_w / hm_w, in_h / hm_h])  # heatmap px -> crop px, (x, y)
    ref_px, test_px = ref_coords * stride, test_coords * stride
    distances = np.linalg.norm(test_px - ref_px, axis=2)  # (N, K)
    person_area = in_h * in_w / BOX_PADDING**2
    oks = keypoint_oks(ref_px, test_px, person_area, _sigmas_for(model_meta))
    return Agreement(len(reference), relative, max_abs, float(distances.mean()), float(distances.max()), float(oks.mean()))


def compare_backends(reference, test, crops, model_meta):
    """Run both backends on the same (N, 3, H, W) crops and compare their heatmaps."""
    return compare_heatmaps(reference.run(crops), test.run(crops), model_meta)


def compare_detector_backends(reference, test, inputs):
    """Run both detector backends on the same (N, 3, H, W) preprocessed frames; relative output error."""
    relative, max_abs = heatmap_errors(reference.run(inputs), test.run(inputs))
    return Agreement(len(inputs), relative, max_abs, output="detector output")


def _sigmas_for(model_meta):
    if model_meta.num_keypoints != len(OKS_SIGMAS):
        raise ValueError(
            f"OKS: COCO sigmas exist for {len(OKS_SIGMAS)} keypoints, the model has {model_meta.num_keypoints}"
        )
    return OKS_SIGMAS
