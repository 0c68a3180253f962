"""PoseEstimator: model checks, batching, empty frames, border/tiny boxes, 100 people, colour order.

The network here is a small fake that meets the pose model contract and whose heatmaps peak where
the crop is brightest in one colour channel; it stands in for the slow, untrained pose network so
the geometry (crop, decode, warp back) and the colour order can be checked end to end. The real
exported r18 runs once for shapes and plumbing (its random weights give meaningless keypoints).
"""
import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import shared_path
from livepose import (
    Detections,
    ModelMetadataError,
    PersonDetector,
    PoseEstimator,
    PoseModelMeta,
    Poses,
)
from livepose.core.metadata import METADATA_KEY

INPUT_SIZE = (128, 96)
K = 17


def bright_spot_model(path, channel=None, input_size=INPUT_SIZE, heatmap_size=None, meta_changes=None,
                      input_name="image", output_name="heatmaps", color_order="RGB", with_meta=True):
    """An ONNX pose model: heatmap k = mean of 4x4 blocks of input channel `channel` (None: all)."""
    height, width = input_size
    heatmap_size = heatmap_size or (height // 4, width // 4)
    stride = height // heatmap_size[0]
    weights = np.zeros((K, 3, stride, stride), np.float32)
    if channel is None:
        weights[:] = 1.0 / (3 * stride * stride)
    else:
        weights[:, channel] = 1.0 / (stride * stride)
    image = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, height, width])
    heatmaps = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", K, *heatmap_size])
    conv = helper.make_node("Conv", [input_name, "w"], [output_name], kernel_shape=[stride, stride], strides=[stride, stride])
    graph = helper.make_graph([conv], "bright_spot", [image], [heatmaps], [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_meta:
        fields = dict(architecture="bright_spot", config="fake", input_size=input_size,
                      heatmap_size=(height // 4, width // 4), color_order=color_order)
        fields.update(meta_changes or {})
        model.metadata_props.add(key=METADATA_KEY, value=PoseModelMeta(**fields).to_json())
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def spot_model(tmp_path_factory):
    return bright_spot_model(tmp_path_factory.mktemp("fake") / "spot.onnx")


def frame_with_people(size_hw, boxes, dot_at=0.3, colour=(255, 255, 255)):
    """A black frame; in each box a 5x5 dot at (x1 + w/2, y1 + dot_at * h). Returns frame, dots (N, 2)."""
    frame = np.zeros(size_hw + (3,), np.uint8)
    dots = []
    for x1, y1, x2, y2 in boxes:
        x, y = int(round((x1 + x2) / 2)), int(round(y1 + dot_at * (y2 - y1)))
        frame[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3] = colour
        dots.append((x, y))
    return frame, np.array(dots, np.float64)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("refine", ["quarter", "dark"])
def test_keypoints_land_on_the_bright_spot(spot_model, backend, refine):
    boxes = [(40, 30, 120, 230), (300, 100, 360, 180), (500, 20, 540, 300)]
    frame, dots = frame_with_people((320, 640), boxes)
    with PoseEstimator(spot_model, backend=backend, refine=refine) as estimator:
        poses = estimator(frame, Detections(np.array(boxes, np.float32), np.array([0.9, 0.8, 0.7], np.float32)))
    assert isinstance(poses, Poses) and len(poses) == 3 and poses.num_keypoints == K
    np.testing.assert_allclose(poses.boxes, boxes)
    np.testing.assert_allclose(poses.box_scores, [0.9, 0.8, 0.7])
    # one heatmap pixel is 4 crop pixels = 4 * box side * 1.25 / crop side frame pixels
    heatmap_px = 4 * np.array([b[3] - b[1] for b in boxes]) * 1.25 / INPUT_SIZE[0]
    error = np.linalg.norm(poses.keypoints - dots[:, None, :], axis=2)
    assert (error.max(axis=1) <= 1.0 * heatmap_px).all(), (error.max(axis=1), heatmap_px)


@pytest.mark.parametrize("color_order, channel, found", [("RGB", 0, "red"), ("BGR", 0, "blue"), ("RGB", 2, "blue")])
def test_crops_are_fed_in_the_colour_order_the_metadata_states(tmp_path, color_order, channel, found):
    """A red dot (BGR 0,0,255) and a blue dot (255,0,0) in one box: the model looks at one channel."""
    model = bright_spot_model(tmp_path / "m.onnx", channel=channel, color_order=color_order)
    frame = np.zeros((200, 200, 3), np.uint8)
    red, blue = (60, 60), (140, 140)
    frame[red[1] - 2 : red[1] + 3, red[0] - 2 : red[0] + 3] = (0, 0, 255)
    frame[blue[1] - 2 : blue[1] + 3, blue[0] - 2 : blue[0] + 3] = (255, 0, 0)
    with PoseEstimator(model, backend="onnxruntime") as estimator:
        poses = estimator(frame, Detections(np.array([[20, 20, 180, 180]], np.float32), np.ones(1, np.float32)))
    target = np.array(red if found == "red" else blue)
    assert np.linalg.norm(poses.keypoints[0] - target, axis=1).max() < 8


def test_a_frame_with_nobody(spot_model):
    with PoseEstimator(spot_model, backend="onnxruntime") as estimator:
        poses = estimator(np.zeros((240, 320, 3), np.uint8), Detections.empty())
        assert len(poses) == 0 and poses.keypoints.shape == (0, K, 2)
        # boxes below box_threshold are dropped before the network
        estimator.box_threshold = 0.5
        low = Detections(np.array([[10, 10, 50, 90]], np.float32), np.array([0.4], np.float32))
        assert len(estimator(np.zeros((240, 320, 3), np.uint8), low)) == 0


def test_border_tiny_and_outside_boxes(spot_model):
    frame = np.full((240, 320, 3), 30, np.uint8)
    boxes = np.array([
        [0, 0, 40, 100],  # at the top-left corner
        [300, 150, 320, 240],  # at the bottom-right corner
        [100, 100, 103, 102],  # a few pixels
        [150, 60, 150, 60],  # zero size
        [-50, -40, 10, 30],  # partly outside the frame
    ], np.float32)
    with PoseEstimator(spot_model, backend="onnxruntime") as estimator:
        poses = estimator(frame, Detections(boxes, np.full(len(boxes), 0.9, np.float32)))
    assert len(poses) == len(boxes)
    assert np.isfinite(poses.keypoints).all() and np.isfinite(poses.scores).all()
    # keypoints stay inside each (padded) crop region
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sides = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0).max(axis=1)
    assert (np.abs(poses.keypoints - centres[:, None]).max(axis=(1, 2)) <= sides * 1.25).all()


def test_a_hundred_people_in_one_frame_in_chunks(spot_model):
    """A 10 x 10 crowd in random order, 16 crops per network call: each pose stays with its box."""
    rng = np.random.default_rng(3)
    cell_w, cell_h = 120, 200
    corners = np.array([(c * cell_w, r * cell_h) for r in range(10) for c in range(10)], np.float64)
    corners += rng.uniform(0, 20, corners.shape)
    sizes = rng.uniform([20, 60], [60, 140], (100, 2))  # padded crops stay inside their cell
    boxes = rng.permutation(np.concatenate([corners, corners + sizes], axis=1))
    frame, dots = frame_with_people((10 * cell_h, 10 * cell_w), boxes)
    with PoseEstimator(spot_model, backend="openvino", max_batch=16) as estimator:
        assert estimator.backend.max_batch == 16
        timings = {}
        detections = Detections(boxes.astype(np.float32), np.linspace(1, 0.5, 100, dtype=np.float32))
        poses = estimator(frame, detections, timings=timings)
    assert len(poses) == 100
    np.testing.assert_allclose(poses.boxes, boxes, rtol=1e-6)
    np.testing.assert_allclose(poses.box_scores, detections.scores)
    error = np.linalg.norm(poses.keypoints - dots[:, None], axis=2).max(axis=1)
    heatmap_px = 4 * (boxes[:, 3] - boxes[:, 1]) * 1.25 / INPUT_SIZE[0]
    assert (error <= heatmap_px).all(), error / heatmap_px
    assert set(timings) == {"crop", "pose", "decode"} and all(t > 0 for t in timings.values())


def test_detections_required_without_a_detector(spot_model):
    with PoseEstimator(spot_model, backend="onnxruntime") as estimator:
        with pytest.raises(ValueError, match="detections: none given and the estimator has no detector"):
            estimator(np.zeros((10, 10, 3), np.uint8))
        with pytest.raises(ValueError, match=r"frame: expected an \(H, W, 3\) uint8"):
            estimator(np.zeros((10, 10), np.uint8), Detections.empty())
        with pytest.raises(ValueError, match="finite"):
            estimator(np.zeros((10, 10, 3), np.uint8), Detections(np.array([[0, 0, np.nan, 5]]), np.ones(1)))


# --- the model contract ---

@pytest.mark.parametrize("kwargs, message", [
    (dict(with_meta=False), "no 'livepose' metadata entry"),
    (dict(meta_changes=dict(input_size=(256, 192), heatmap_size=(64, 48))), r"input 'image' has shape \(None, 3, 128, 96\), its metadata says \(N, 3, 256, 192\)"),
    (dict(heatmap_size=(16, 12)), r"output 'heatmaps' has shape \(N, 17, 16, 12\), its metadata says \(N, 17, 32, 24\)"),
    (dict(meta_changes=dict(keypoint_names=("nose", "neck"))), r"metadata says \(N, 2, 32, 24\)"),
    (dict(input_name="input"), "expected input 'image' and output 'heatmaps', got 'input' -> 'heatmaps'"),
    (dict(meta_changes=dict(heatmap_size=(64, 48))), "not a quarter of input_size"),
])
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_models_contradicting_their_metadata_are_refused(tmp_path, kwargs, message, backend):
    model = bright_spot_model(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(ModelMetadataError, match=message):
        PoseEstimator(model, backend=backend)


def test_missing_pose_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="pose model .*nope.onnx: no such file"):
        PoseEstimator(tmp_path / "nope.onnx")
    with pytest.raises(ValueError, match="refine: expected one of"):
        PoseEstimator(tmp_path / "nope.onnx", refine="soft-argmax")


# --- with the real detector and the exported network ---

@pytest.mark.slow
def test_detector_and_exported_r18_on_a_real_photo(r18_onnx, yolox_nano):
    """Plumbing with the real r18 export (random weights: keypoint positions mean nothing)."""
    frame = cv2.imread(str(shared_path("images", "ultralytics_zidane.jpg")))
    detector = PersonDetector(yolox_nano, backend="onnxruntime")
    with PoseEstimator(r18_onnx, detector=detector, backend="onnxruntime") as estimator:
        assert estimator.meta.input_size == (256, 192) and estimator.num_keypoints == 17
        timings = {}
        poses = estimator(frame, timings=timings)
    assert len(poses) == 2
    assert set(timings) == {"detect", "crop", "pose", "decode"}
    np.testing.assert_allclose(poses.boxes, detector(frame).boxes)
    # every keypoint lies inside its person's padded crop region
    centres = (poses.boxes[:, :2] + poses.boxes[:, 2:]) / 2
    half = (poses.boxes[:, 2:] - poses.boxes[:, :2]).max(axis=1) * 1.25 * 1.34 / 2
    assert (np.abs(poses.keypoints - centres[:, None]).max(axis=(1, 2)) <= half + 1).all()
    records = poses.to_dicts()
    assert len(records) == 2 and len(records[0]["keypoints"]) == 17


def test_detector_given_as_a_path(spot_model, yolox_nano):
    frame = cv2.imread(str(shared_path("images", "skimage_astronaut.png")))
    with PoseEstimator(spot_model, detector=yolox_nano, backend="onnxruntime") as estimator:
        assert isinstance(estimator.detector, PersonDetector) and estimator.detector.layout == "yolox"
        poses = estimator(frame)
    assert len(poses) == 1


# ---------------------------------------------------------------- target encodings (metadata schema 2)

def _with_meta(path, meta_json):
    model = onnx.load(str(path))
    del model.metadata_props[:]
    model.metadata_props.add(key=METADATA_KEY, value=meta_json)
    onnx.save(model, str(path))
    return path


def test_an_old_schema_model_decodes_as_before(spot_model, tmp_path):
    import json

    old = json.loads(PoseModelMeta(architecture="bright_spot", config="fake", input_size=INPUT_SIZE,
                                   heatmap_size=(INPUT_SIZE[0] // 4, INPUT_SIZE[1] // 4)).to_json())
    old.pop("target_encoding")
    old["schema_version"] = 1
    path = _with_meta(bright_spot_model(tmp_path / "v1.onnx"), json.dumps(old))
    boxes = np.array([[40.0, 30.0, 140.0, 230.0]])
    frame, _ = frame_with_people((300, 200), boxes)
    with PoseEstimator(path, backend="onnxruntime") as v1, PoseEstimator(spot_model, backend="onnxruntime") as v2:
        assert v1.meta.schema_version == 1 and v1.meta.target_encoding == "standard" and v1.refine == "quarter"
        detections = Detections(boxes, np.ones(1))
        np.testing.assert_array_equal(v1(frame, detections).keypoints, v2(frame, detections).keypoints)


def test_an_unbiased_model_is_cropped_and_decoded_the_unbiased_way(tmp_path):
    from livepose.core.geometry import box_to_center_scale, get_affine_transforms, xyxy_to_xywh

    path = bright_spot_model(tmp_path / "udp.onnx", meta_changes={"target_encoding": "unbiased"})
    boxes = np.array([[40.0, 30.0, 140.0, 230.0]])
    frame, dots = frame_with_people((300, 200), boxes)
    with PoseEstimator(path, backend="onnxruntime") as estimator:
        assert estimator.refine == "dark"  # UDP's decoding, unless the caller picks another
        poses = estimator(frame, Detections(boxes, np.ones(1)))
    # the heatmaps this fake computes are 4x4 block means of the UNBIASED crop: decode them by hand
    centers, scales = box_to_center_scale(xyxy_to_xywh(boxes), INPUT_SIZE)
    crop = cv2.warpAffine(frame, get_affine_transforms(centers, scales, INPUT_SIZE, encoding="unbiased")[0],
                          INPUT_SIZE[::-1])
    from livepose.core.crops import model_input
    from livepose.core.decode import decode_heatmaps

    tensor = model_input(crop[None], estimator.meta)[0].mean(axis=0)  # (H, W): what the conv averages
    heat = tensor.reshape(INPUT_SIZE[0] // 4, 4, INPUT_SIZE[1] // 4, 4).mean(axis=(1, 3))
    from livepose.core.geometry import heatmap_to_frame

    coords, _ = decode_heatmaps(np.repeat(heat[None, None], K, 1), "dark", sigma=2.0)
    expected = heatmap_to_frame(coords, centers, scales, (INPUT_SIZE[0] // 4, INPUT_SIZE[1] // 4), "unbiased")
    np.testing.assert_allclose(poses.keypoints, expected, atol=0.05)
    assert np.abs(poses.keypoints[0, 0] - dots[0]).max() < 4  # and it lands on the bright spot


def test_a_model_claiming_an_unknown_encoding_is_refused_by_name(spot_model, tmp_path):
    import json

    meta = json.loads(PoseModelMeta(architecture="bright_spot", config="fake", input_size=INPUT_SIZE,
                                    heatmap_size=(INPUT_SIZE[0] // 4, INPUT_SIZE[1] // 4)).to_json())
    meta["target_encoding"] = "simcc"
    path = _with_meta(bright_spot_model(tmp_path / "simcc.onnx"), json.dumps(meta))
    with pytest.raises(ModelMetadataError, match="trained with 'simcc' targets"):
        PoseEstimator(path, backend="onnxruntime")
