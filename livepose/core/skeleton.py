"""COCO-17 keypoint definitions: names, 0-based limbs, flip pairs and drawing colours. Data only."""

KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

# Left/right pairs swapped by a horizontal flip (the tutorial's FLIP_PAIRS).
FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

# Limbs as 0-based index pairs (the COCO skeleton, which is 1-based in the annotation file).
EDGES = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

# Per-limb BGR colours: left side warm, right side cool, face and torso neutral.
_LEFT, _RIGHT, _CENTER = (0, 128, 255), (255, 128, 0), (0, 255, 0)


def _side(index):
    name = KEYPOINT_NAMES[index]
    return "left" if name.startswith("left") else "right" if name.startswith("right") else "center"


_SIDE_COLORS = {"left": _LEFT, "right": _RIGHT, "center": _CENTER}
# A limb takes its side's colour when both ends are on that side (arms, legs), else the neutral one.
EDGE_COLORS = tuple(
    _SIDE_COLORS[_side(a)] if _side(a) == _side(b) else _CENTER for a, b in EDGES
)
KEYPOINT_COLORS = tuple(_SIDE_COLORS[_side(i)] for i in range(NUM_KEYPOINTS))

# COCO per-keypoint OKS sigmas (pycocotools' COCOeval kpt_oks_sigmas).
OKS_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)


def flip_permutation():
    """Index permutation (K,) that swaps each left/right keypoint with its twin."""
    perm = list(range(NUM_KEYPOINTS))
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm
