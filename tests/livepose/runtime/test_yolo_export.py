"""`export-detector` through ultralytics, and our ultralytics-layout decode against ultralytics' own.

Needs the `yolo` extra (ultralytics + torch 2.14.1, several GB), so it is skipped where that is
absent. Run it in a separate venv:
    python -m venv /tmp/yolo-venv && /tmp/yolo-venv/bin/pip install -e '.[cpu,yolo,dev]'
    /tmp/yolo-venv/bin/python -m pytest tests/livepose/test_yolo_export.py

The model is a random-weight YOLO11n (`yolo11n.yaml`, offline). Its untrained activations vanish
with depth (every anchor would score the same), so the test first sets the BatchNorm statistics
from one forward pass over the real photos and lifts the class biases to -3: scores then vary from
anchor to anchor. Both sides run the same static 640x640 ONNX (ultralytics' `.pt` path letterboxes
to a stride multiple instead). Boxes are matched by IoU, since near-equal random scores can reorder NMS.

Measured on ultralytics_bus.jpg and ultralytics_zidane.jpg at threshold 0.1, NMS IoU 0.45, ONNX Runtime:
ultralytics 8.4.190 keeps 241 / 254 person boxes, of which 17 / 59 lie wholly in the letterbox
padding (zero area once clipped; we drop those); the other 224 / 195 equal ours one for one:
IoU >= 0.99999, identical scores, corners within 1.2e-4 px. OpenVINO f32 matches as well.
"""
import glob

import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA, shared_path

ultralytics = pytest.importorskip(
    "ultralytics", reason="needs the yolo extra: pip install -e '.[cpu,yolo,dev]' (torch, several GB; see README)"
)
torch = pytest.importorskip("torch")

from livepose.runtime.detector import PersonDetector  # noqa: E402
from livepose.runtime.yolo_export import ExportError, export_detector  # noqa: E402

THRESHOLD, NMS_IOU = 0.1, 0.45


def box_iou(a, b):
    """(N, 4), (M, 4) xyxy -> (N, M) IoU."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


@pytest.fixture(scope="module")
def random_yolo_onnx(tmp_path_factory):
    from pathlib import Path

    import yaml
    from ultralytics import YOLO

    shared_path("images")
    torch.manual_seed(0)
    model = YOLO("yolo11n.yaml")
    net = model.model
    photos = [cv2.resize(cv2.imread(f), (320, 320))[:, :, ::-1] for f in sorted(glob.glob(str(SHARED_DATA / "images" / "*")))]
    # (B, H, W, 3) RGB -> (B, 3, H, W) in 0-1
    batch = torch.tensor(np.stack(photos).transpose(0, 3, 1, 2) / 255.0, dtype=torch.float32)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running stats = this batch's statistics
            module.reset_running_stats()
    net.train()
    with torch.no_grad():
        net(batch)
    net.eval()
    for branch in net.model[-1].cv3:  # the class-score convolutions of the Detect head
        branch[-1].bias.data.fill_(-3.0)
        branch[-1].bias.data[0] = -1.0  # person: the best class at many anchors, so many boxes
    coco = Path(ultralytics.__file__).parent / "cfg" / "datasets" / "coco.yaml"
    net.names = yaml.safe_load(coco.read_text())["names"]  # a .yaml model names its classes '0', '1', ...
    folder = tmp_path_factory.mktemp("yolo")
    model.save(folder / "yolo11n-random.pt")
    return export_detector(folder / "yolo11n-random.pt", out=folder / "yolo11n-random.onnx", imgsz=640)


def test_export_writes_a_static_ultralytics_onnx(random_yolo_onnx):
    import onnx

    model = onnx.load(str(random_yolo_onnx))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 640, 640]
    detector = PersonDetector(random_yolo_onnx, backend="onnxruntime")
    assert detector.layout == "ultralytics" and detector.input_size == (640, 640) and detector.person_class == 0


@pytest.mark.slow
@pytest.mark.parametrize("image", ["ultralytics_bus.jpg", "ultralytics_zidane.jpg"])
def test_our_decode_matches_ultralytics_predictions(random_yolo_onnx, image):
    from ultralytics import YOLO

    frame = cv2.imread(str(shared_path("images", image)))
    theirs = YOLO(str(random_yolo_onnx), task="detect").predict(
        frame, conf=THRESHOLD, iou=NMS_IOU, classes=[0], imgsz=640, max_det=300, verbose=False
    )[0].boxes
    their_boxes, their_scores = theirs.xyxy.numpy(), theirs.conf.numpy()
    # random boxes wholly in the letterbox padding clip to nothing: ultralytics keeps them, we drop them
    visible = (their_boxes[:, 2] > their_boxes[:, 0]) & (their_boxes[:, 3] > their_boxes[:, 1])
    their_boxes, their_scores = their_boxes[visible], their_scores[visible]
    ours = PersonDetector(random_yolo_onnx, backend="onnxruntime", score_threshold=THRESHOLD, nms_iou=NMS_IOU)(frame)
    print(f"{image}: ultralytics {len(their_boxes)} boxes, ours {len(ours)}")
    assert len(their_boxes) >= 20  # enough boxes for the comparison to mean something
    assert abs(len(ours) - len(their_boxes)) <= 0.02 * len(their_boxes)  # measured: equal
    iou = box_iou(their_boxes, ours.boxes)
    best = iou.argmax(axis=1)
    matched = iou.max(axis=1) > 0.99
    assert matched.mean() >= 0.95, f"{matched.sum()} of {len(matched)} ultralytics boxes matched"  # measured: all
    np.testing.assert_allclose(ours.scores[best[matched]], their_scores[matched], atol=1e-5)


def test_export_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="out: expected a path ending in .onnx"):
        export_detector("yolo11n.yaml", out=tmp_path / "x.engine")
    with pytest.raises(ValueError, match="imgsz: expected a positive multiple of 32"):
        export_detector("yolo11n.yaml", out=tmp_path / "x.onnx", imgsz=650)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises((ExportError, FileNotFoundError), match="broken.pt"):
        export_detector(broken, out=tmp_path / "broken.onnx")
    assert not (tmp_path / "broken.onnx").exists()
