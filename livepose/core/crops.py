"""Batched affine person crops and their normalisation to the network's input tensor."""
import cv2
import numpy as np

from livepose.core.geometry import get_affine_transforms


def crop_persons(frame, centers, scales, input_size, rotations=None, encoding="standard"):
    """Cut N person crops out of a frame.

    frame: (H0, W0, 3) uint8; centers, scales: (N, 2) (see geometry.box_to_center_scale);
    input_size: (H, W); encoding: the model's target encoding (geometry.TARGET_ENCODINGS). Returns crops (N, H, W, 3) uint8 in the frame's colour order and the
    frame -> crop affines (N, 2, 3). Pixels outside the frame are black, as in training.
    """
    height, width = input_size
    affines = get_affine_transforms(centers, scales, input_size, rotations, encoding=encoding)
    crops = np.empty((len(affines), height, width, frame.shape[2]), dtype=frame.dtype)
    for crop, affine in zip(crops, affines):
        cv2.warpAffine(frame, affine, (width, height), dst=crop, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crops, affines


def normalize_crops(crops, mean, std, swap_channels):
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32: (pixel / 255 - mean) / std per channel.

    swap_channels reverses the channel order first (BGR frame -> RGB model or the other way);
    mean and std are per channel in the model's order.
    """
    scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).reshape(1, 3, 1, 1)
    offset = (-np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).reshape(1, 3, 1, 1)
    # (N, H, W, C) -> (N, C, H, W)
    chw = crops.transpose(0, 3, 1, 2)
    if swap_channels:
        chw = chw[:, ::-1]
    out = chw.astype(np.float32)
    out *= scale
    out += offset
    return np.ascontiguousarray(out)


def model_input(crops, meta):
    """(N, H, W, 3) uint8 BGR crops -> the (N, 3, H, W) float32 tensor a pose model takes.

    meta: its PoseModelMeta. Channels in the model's colour order, ImageNet-normalised, unless the
    graph normalises itself (then 0-255 pixels).
    """
    if meta.normalization_in_graph:
        mean, std = (0.0, 0.0, 0.0), (1 / 255.0,) * 3
    else:
        mean, std = meta.mean, meta.std
    return normalize_crops(crops, mean, std, swap_channels=meta.color_order == "RGB")  # frames are BGR
