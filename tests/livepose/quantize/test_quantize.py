"""`livepose quantize` end to end (a subprocess, real files) and the INT8 model it writes."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from conftest import REPO, export_pose_model, shared_path
from livepose.core.metadata import read_onnx_metadata
from livepose.runtime.open_model import cpu_runs_int8_fast
from tiny_pose_model import write_tiny_pose_onnx

pytest.importorskip("nncf", reason="quantisation needs the int8 extra: pip install -e '.[int8]'")
pytest.importorskip("openvino", reason="candidates are scored on OpenVINO: pip install -e '.[cpu]'")

NOTE_FIELDS = {"precision", "method", "nncf", "source", "source_sha256", "calibration", "calibration_crops",
               "validation_crops", "accuracy_checked", "max_drop", "validation_mean_oks", "heatmap_rel_error",
               "kept_f32", "int8_mac_fraction"}


def livepose(tmp_path, *args, env=None, timeout=600):
    environment = dict(os.environ, LIVEPOSE_CACHE=str(tmp_path / "cache"), LIVEPOSE_ENGINES=str(tmp_path / "none"),
                       LIVEPOSE_DOWNLOAD_MIRROR="http://127.0.0.1:9/models", **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "livepose", *map(str, args)], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def coco_subset_of(annotation_ids, out_path, coco_subset):
    """A COCO keypoints file holding only the given person annotations (and their images)."""
    data = json.loads(coco_subset[0].read_text())
    data["annotations"] = [a for a in data["annotations"] if a["id"] in set(annotation_ids)]
    images = {a["image_id"] for a in data["annotations"]}
    data["images"] = [i for i in data["images"] if i["id"] in images]
    out_path.write_text(json.dumps(data))
    return out_path


def last_line(stderr):
    return stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def few_persons(coco_subset, tmp_path_factory):
    """COCO annotations of 8 labelled persons: quick calibration for the tiny model."""
    data = json.loads(coco_subset[0].read_text())
    ids = [a["id"] for a in data["annotations"] if a.get("num_keypoints", 0) > 5 and not a.get("iscrowd")][:8]
    return coco_subset_of(ids, tmp_path_factory.mktemp("coco") / "few.json", coco_subset), coco_subset[1]


@pytest.fixture(scope="module")
def tiny_trained(tmp_path_factory):
    """The tiny network labelled trained, so its (random) keypoints are scored: a guard to test quickly."""
    return write_tiny_pose_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx", trained=True)


@pytest.mark.slow
def test_the_overfit_model_quantises_within_oks_and_auto_runs_it(overfit_r18_checkpoint, coco_subset, tmp_path):
    from train.fit import overfit_persons
    from train.model import get_config

    f32 = export_pose_model("r18-256x192", tmp_path, overfit_r18_checkpoint)
    persons = overfit_persons(*coco_subset, get_config("r18-256x192"), 8)  # the 8 it memorised
    eight = coco_subset_of([p.annotation_id for p in persons], tmp_path / "eight.json", coco_subset)
    result = livepose(tmp_path, "quantize", "--pose", f32, "--calib-coco", eight, coco_subset[1])
    assert result.returncode == 0, result.stderr
    int8 = f32.with_name(f"{f32.stem}-int8.onnx")
    note = read_onnx_metadata(int8).extra["quantization"]
    assert NOTE_FIELDS <= set(note), NOTE_FIELDS - set(note)
    from livepose.files import sha256_of

    assert note["source_sha256"] == sha256_of(f32) and note["accuracy_checked"] is True
    assert note["calibration_crops"] + note["validation_crops"] == 8 and "8 ground-truth persons" in note["calibration"]
    assert note["validation_mean_oks"] >= 0.99 and note["int8_mac_fraction"] >= 0.8, note
    print(f"overfit r18 INT8: {json.dumps(note)}")  # the figures for the issue note (pytest -s)

    video = shared_path("videos", "opencv_vtest.avi")
    ran = livepose(tmp_path, "video", video, "--pose-model", f32, "--detector", shared_path("models", "yolox_nano.onnx"),
                   "--no-fetch", "--max-frames", 2, "--json", tmp_path / "poses.jsonl", "--no-progress")
    assert ran.returncode == 0, ran.stderr
    assert len((tmp_path / "poses.jsonl").read_text().splitlines()) == 2
    if cpu_runs_int8_fast():
        assert f"using INT8 model {int8.name} on OpenVINO" in ran.stderr and "openvino int8" in ran.stderr
    else:
        assert "openvino int8" not in ran.stderr


def test_a_guard_that_cannot_be_met_writes_nothing_and_force_writes(tiny_trained, few_persons, tmp_path):
    out = tmp_path / "tiny-int8.onnx"
    args = ["quantize", "--pose", tiny_trained, "--calib-coco", *few_persons, "--max-drop", "0", "--max-reverts", 1,
            "--out", out]
    refused = livepose(tmp_path, *args)
    assert refused.returncode == 1, refused.stderr
    assert not out.exists() and "not written (--force writes it)" in refused.stderr
    assert "mean OKS vs f32" in last_line(refused.stderr) and "--max-drop 0" in last_line(refused.stderr)
    forced = livepose(tmp_path, *args, "--force")
    assert forced.returncode == 0, forced.stderr
    note = read_onnx_metadata(out).extra["quantization"]
    assert note["validation_mean_oks"] < 1.0 and "written anyway (--force)" in forced.stderr
    # the written model is a real INT8 QDQ graph that runs
    assert any(node.op_type == "DequantizeLinear" for node in onnx.load(str(out)).graph.node)


def test_random_weights_keep_the_head_f32_unchecked(tmp_path, few_persons):
    f32 = write_tiny_pose_onnx(tmp_path / "random.onnx")
    result = livepose(tmp_path, "quantize", "--pose", f32, "--calib-coco", *few_persons)
    assert result.returncode == 0, result.stderr
    note = read_onnx_metadata(tmp_path / "random-int8.onnx").extra["quantization"]
    assert note["accuracy_checked"] is False and note["validation_mean_oks"] is None
    assert len(note["kept_f32"]) == 2 and np.isfinite(note["heatmap_rel_error"])
    assert "accuracy not checked" in last_line(result.stderr)


@pytest.mark.parametrize("case", ["nobody", "missing", "unreadable", "no metadata", "no nncf"])
def test_bad_input_is_one_line_exit_2(case, tiny_trained, tmp_path, yolox_nano):
    import cv2

    pose, calibration, env = tiny_trained, None, None
    if case == "nobody":  # a video of grey frames: the detector finds no person
        calibration = tmp_path / "empty.avi"
        writer = cv2.VideoWriter(str(calibration), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
        for _ in range(5):
            writer.write(np.full((240, 320, 3), 128, np.uint8))
        writer.release()
        expected = "found no person"
    elif case == "missing":
        calibration, expected = tmp_path / "absent.mp4", "absent.mp4"
    elif case == "unreadable":
        calibration = tmp_path / "broken.mp4"
        calibration.write_bytes(b"not a video")
        expected = "not a readable video"
    else:
        calibration = shared_path("videos", "opencv_vtest.avi")
        if case == "no metadata":
            model = onnx.load(str(tiny_trained))
            del model.metadata_props[:]
            pose = tmp_path / "plain.onnx"
            onnx.save(model, str(pose))
            expected = "no 'livepose' metadata"
        else:  # nncf absent: a module of that name that fails to import, first on the path
            (tmp_path / "fake").mkdir()
            (tmp_path / "fake" / "nncf.py").write_text("raise ImportError('No module named nncf')\n")
            env = {"PYTHONPATH": str(tmp_path / "fake")}
            expected = "pip install 'livepose[int8]'"
    result = livepose(tmp_path, "quantize", "--pose", pose, "--calib-video", calibration, "--detector", yolox_nano,
                      "--no-fetch", env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (tmp_path / "tiny-int8.onnx").exists() and not list(tmp_path.glob("*-int8.onnx"))


def test_fetch_models_int8_needs_a_calibration_video(tmp_path):
    result = livepose(tmp_path, "fetch-models", "--int8")
    assert result.returncode == 2 and "--int8 and --calib-video V go together" in result.stderr
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())  # nothing fetched
