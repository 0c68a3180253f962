"""The person detector: YOLOX-Nano on real photos, letterbox geometry, layout identification.

Counts with ../shared/data/models/yolox_nano.onnx at the default score threshold 0.3 (ONNX Runtime and
OpenVINO f32 agree), checked by eye on annotated copies:
  ultralytics_bus.jpg     3  (the 2 full bodies and the man cut at the right edge; the person cut
                              at the left edge scores 0.26 and appears at threshold 0.2)
  ultralytics_zidane.jpg  2
  skimage_astronaut.png   1
  opencv_messi5.jpg       6  (the footballer + 5 blurred spectators)
  opencv_basketball1.png  2, opencv_basketball2.png 2
"""
import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import shared_path
from livepose.files import sha256_of
from livepose.runtime.detector import (
    Letterbox,
    PersonDetector,
    decode_yolox,
    letterbox,
    nms,
    yolox_grid,
)
from livepose.runtime.detector_layout import (
    KNOWN_DETECTORS,
    DetectorLayoutError,
    identify_layout,
)

# Boxes drawn by hand (x1, y1, x2, y2, frame pixels) around the people a person would count.
PEOPLE = {
    "ultralytics_bus.jpg": [(50, 395, 215, 900), (220, 405, 345, 855), (680, 450, 810, 875)],
    "ultralytics_zidane.jpg": [(150, 200, 680, 720), (710, 40, 1150, 710)],
    "skimage_astronaut.png": [(10, 20, 370, 512)],
    "opencv_messi5.jpg": [(60, 55, 465, 335)],
    "opencv_basketball1.png": [(35, 85, 170, 480), (430, 20, 640, 480)],
    "opencv_basketball2.png": [(35, 85, 165, 480), (430, 20, 640, 480)],
}
# (min, max) persons found at the default threshold: the hand-drawn people plus what blur allows
COUNT_RANGE = {
    "ultralytics_bus.jpg": (3, 4),
    "ultralytics_zidane.jpg": (2, 2),
    "skimage_astronaut.png": (1, 1),
    "opencv_messi5.jpg": (1, 8),
    "opencv_basketball1.png": (2, 2),
    "opencv_basketball2.png": (2, 2),
}


def iou(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


@pytest.fixture(scope="module", params=["onnxruntime", "openvino"])
def yolox_detector(request, yolox_nano):
    with_backend = PersonDetector(yolox_nano, backend=request.param)
    yield with_backend
    with_backend.close()


@pytest.mark.parametrize("name", sorted(PEOPLE))
def test_yolox_nano_finds_the_people_in_real_photos(yolox_detector, name):
    frame = cv2.imread(str(shared_path("images", name)))
    detections = yolox_detector(frame)
    low, high = COUNT_RANGE[name]
    assert low <= len(detections) <= high, (name, len(detections), detections.scores)
    for person in PEOPLE[name]:
        best = max(iou(person, box) for box in detections.boxes)
        assert best >= 0.6, (name, person, best)
    height, width = frame.shape[:2]
    assert (detections.boxes >= 0).all() and (detections.boxes[:, [0, 2]] <= width).all()
    assert (detections.boxes[:, [1, 3]] <= height).all()
    assert (detections.scores > 0.3).all() and (np.diff(detections.scores) <= 0).all()


def test_bus_edge_person_at_a_lower_threshold(yolox_nano):
    detector = PersonDetector(yolox_nano, backend="onnxruntime", score_threshold=0.2)
    detections = detector(cv2.imread(str(shared_path("images", "ultralytics_bus.jpg"))))
    assert len(detections) == 4
    assert max(iou((0, 550, 80, 880), box) for box in detections.boxes) >= 0.6


def test_no_person_in_a_blank_frame(yolox_detector):
    detections = yolox_detector(np.full((300, 500, 3), 127, np.uint8))
    assert len(detections) == 0 and detections.boxes.shape == (0, 4)


def test_bad_frames_refused(yolox_detector):
    with pytest.raises(ValueError, match=r"frame: expected an \(H, W, 3\) uint8"):
        yolox_detector(np.zeros((100, 100), np.uint8))
    with pytest.raises(ValueError, match="frame"):
        yolox_detector(np.zeros((100, 100, 3), np.float32))


# --- letterbox geometry ---

def to_input(box, boxes):
    """(N, 4) x1, y1, x2, y2 frame pixels -> detector input pixels, by the Letterbox's definition."""
    return np.asarray(boxes, dtype=np.float64) * box.ratio + np.array(box.pad * 2, dtype=np.float64)


@pytest.mark.parametrize("frame_hw", [(1080, 810), (720, 1280), (342, 548), (416, 416), (100, 900), (5, 3), (2, 3000)])
@pytest.mark.parametrize("centered", [True, False])
def test_letterbox_places_the_frame_where_its_map_says(frame_hw, centered):
    input_size = (416, 640)
    frame = np.zeros(frame_hw + (3,), np.uint8)
    h, w = frame_hw
    rect = np.array([w * 0.3, h * 0.4, w * 0.6, h * 0.9])
    x1, y1, x2, y2 = np.round(rect).astype(int)
    frame[y1:y2, x1:x2] = 255
    image, box = letterbox(frame, input_size, centered)
    assert image.shape == input_size + (3,) and image.dtype == np.uint8
    # the white rectangle appears where to_input puts it, to within a resampled pixel
    ys, xs = np.nonzero(image[:, :, 0] > 127)
    found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
    np.testing.assert_allclose(found, to_input(box, [[x1, y1, x2, y2]])[0], atol=1.0 + box.ratio)
    # the padding is grey 114, and the frame area is the padding's complement
    content = np.zeros(input_size, bool)
    left, top = box.pad
    size = round if centered else int  # ultralytics rounds the resized size, YOLOX truncates
    new_h, new_w = max(int(size(h * box.ratio)), 1), max(int(size(w * box.ratio)), 1)
    content[top : top + new_h, left : left + new_w] = True
    assert (image[~content] == 114).all()
    if not centered:
        assert box.pad == (0, 0)
    else:  # centred: the padding is split, the odd pixel at the far side
        assert abs(left - (input_size[1] - new_w - left)) <= 1
        assert abs(top - (input_size[0] - new_h - top)) <= 1
    np.testing.assert_allclose(box.to_frame(to_input(box, [rect]))[0], rect, atol=1e-9)


def test_letterbox_round_trip_of_boxes():
    box = Letterbox(0.385, (0, 52))
    boxes = np.array([[0.0, 0.0, 810.0, 1080.0], [12.5, 400.25, 99.0, 700.0]])
    np.testing.assert_allclose(box.to_frame(to_input(box, boxes)), boxes, atol=1e-9)
    np.testing.assert_allclose(to_input(box, [[0, 0, 810, 1080]])[0], [0, 52, 311.85, 467.8])


# --- decode and NMS ---

def test_yolox_grid_order_and_decode():
    grid, strides = yolox_grid((416, 416))
    assert len(grid) == 52 * 52 + 26 * 26 + 13 * 13 == 3549
    # stride 16 block starts after the 52x52 stride-8 block; row-major: x varies fastest
    assert grid[52 * 52 + 27].tolist() == [1.0, 1.0] and strides[52 * 52 + 27] == 16
    output = np.zeros((1, 3549, 85), np.float32)
    cell = 52 * 52 + 27  # stride 16, cell (1, 1)
    output[0, cell, :4] = [0.5, 0.25, np.log(4.0), np.log(2.0)]
    output[0, cell, 4] = 0.8  # objectness
    output[0, cell, 5] = 0.9  # person
    output[0, cell, 6] = 0.5  # bicycle
    other = 100  # a cell whose best class is not person
    output[0, other, 4], output[0, other, 5], output[0, other, 7] = 1.0, 0.6, 0.7
    boxes, scores = decode_yolox(output, (416, 416))
    assert len(boxes) == 3549 - 1  # all cells but the one whose best class is a car
    best = scores.argmax()
    assert scores[best] == pytest.approx(0.72)
    # centre (1.5, 1.25) * 16 = (24, 20); size (64, 32)
    np.testing.assert_allclose(boxes[best], [24 - 32, 20 - 16, 24 + 32, 20 + 16], rtol=1e-6)
    with pytest.raises(DetectorLayoutError, match=r"expected shape \(1, 3549"):
        decode_yolox(np.zeros((1, 8400, 85), np.float32), (416, 416))


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5], [21, 20, 31, 30]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.3])
    np.testing.assert_array_equal(nms(boxes, scores, 0.45), [3, 2])
    np.testing.assert_array_equal(nms(boxes, scores, 0.99), [3, 0, 1, 2, 4])
    assert len(nms(np.zeros((0, 4)), np.zeros(0), 0.5)) == 0


# --- layout identification ---

def test_known_files_are_identified_by_hash(yolox_nano):
    sha = sha256_of(yolox_nano)
    assert sha in KNOWN_DETECTORS  # a different export than the official release
    assert identify_layout(yolox_nano, {}) == "yolox"
    official = "c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d"
    assert KNOWN_DETECTORS[official][0] == "yolox"


ULTRALYTICS_PROPS = {
    "author": "Ultralytics", "task": "detect", "imgsz": "[320, 320]", "stride": "32",
    "names": "{0: 'person', 1: 'bicycle', 2: 'car'}",
}


def test_layout_from_ultralytics_metadata(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not hashed as known")
    assert identify_layout(path, ULTRALYTICS_PROPS) == "ultralytics"
    with pytest.raises(DetectorLayoutError, match="'pose' model"):
        identify_layout(path, dict(ULTRALYTICS_PROPS, task="pose"))
    assert identify_layout(path, {}, layout="yolox") == "yolox"
    with pytest.raises(DetectorLayoutError, match="layout: expected one of"):
        identify_layout(path, {}, layout="yolov5")


def test_unknown_model_is_refused_with_the_flag_to_pass():
    path = shared_path("models", "kazuhito_person_detector.onnx")
    with pytest.raises(DetectorLayoutError, match="--detector-layout yolox"):
        PersonDetector(path)


def test_missing_and_corrupt_detector_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such.onnx"):
        PersonDetector(tmp_path / "no-such.onnx")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.onnx"):
        PersonDetector(empty, layout="yolox")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(ValueError, match="garbage.onnx"):
        PersonDetector(garbage, layout="yolox")


def constant_ultralytics_model(path, predictions, input_hw=(320, 320)):
    """An ONNX model in the ultralytics layout that outputs fixed (1, 4 + C, A) predictions."""
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *input_hw])
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(predictions.shape))
    constant = numpy_helper.from_array(predictions.astype(np.float32), "predictions")
    # output = predictions + 0 * mean(image): keeps the input in the graph
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["predictions", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(nodes, "fake", [image], [output], [constant, numpy_helper.from_array(np.float32(0), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in ULTRALYTICS_PROPS.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_ultralytics_layout_end_to_end_with_a_fixed_output_model(tmp_path, backend):
    """Boxes placed in input pixels come back in frame pixels: centred letterbox undone, clipped."""
    anchors = 6
    pred = np.zeros((1, 4 + 3, anchors), np.float32)
    # frame 640x480 (W x H) -> ratio 0.5, resized 320x240, pad (0, 40)
    pred[0, :4, 0] = [160, 160, 100, 60]  # person 0.9 -> frame (220, 180, 420, 300)
    pred[0, 4, 0] = 0.9
    pred[0, :4, 1] = [162, 161, 100, 60]  # overlaps anchor 0 at lower score: suppressed
    pred[0, 4, 1] = 0.8
    pred[0, :4, 2] = [10, 100, 40, 40]  # person 0.5 -> frame (-20, 80, 60, 160): clipped to x = 0
    pred[0, 4, 2] = 0.5
    pred[0, :4, 3] = [250, 200, 20, 20]  # best class is car: not a person
    pred[0, 4, 3], pred[0, 6, 3] = 0.6, 0.7
    pred[0, :4, 4] = [100, 100, 20, 20]  # person below threshold
    pred[0, 4, 4] = 0.2
    pred[0, :4, 5] = [160, 10, 30, 10]  # in the top padding: wholly outside the frame
    pred[0, 4, 5] = 0.95
    model = constant_ultralytics_model(tmp_path / "fake_yolo.onnx", pred)
    detector = PersonDetector(model, backend=backend)
    assert detector.layout == "ultralytics" and detector.input_size == (320, 320)
    detections = detector(np.zeros((480, 640, 3), np.uint8))
    np.testing.assert_allclose(detections.scores, [0.9, 0.5], rtol=1e-6)
    np.testing.assert_allclose(detections.boxes, [[220, 180, 420, 300], [0, 80, 60, 160]], atol=1e-3)
