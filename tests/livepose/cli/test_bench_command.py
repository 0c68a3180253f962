"""`livepose bench` on a few frames of a real video with real (random-weight) models."""
import argparse
import json

import pytest

from tests.conftest import shared_path

KEYS = {"fps", "frames", "persons_per_frame", "crops_per_s", "peak_rss_mb", "stages_ms", "backend", "precision", "model"}
STAGES = {"read", "detect", "crop", "pose", "decode", "track", "draw", "write"}


def bench_args(argv):
    from livepose.cli.bench import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.slow
@pytest.mark.parametrize("backend, detect_every", [("onnxruntime", 1), ("openvino", 3)])
def test_bench_json_has_every_key_and_sane_values(tmp_path, r18_onnx, yolox_nano, backend, detect_every, capsys):
    pytest.importorskip(backend)
    from livepose.cli.bench import run as run_bench
    from livepose.stream.bench import peak_rss_mb

    video = shared_path("videos", "opencv_vtest.avi")
    out = tmp_path / "bench.json"
    args = bench_args([str(video), "--max-frames", "6", "--warmup", "1", "--json", str(out),
                       "--pose-model", str(r18_onnx), "--detector", str(yolox_nano), "--no-fetch",
                       "--backend", backend, "--detect-every", str(detect_every)])
    peak_before = peak_rss_mb()
    assert run_bench(args) == 0
    result = json.loads(out.read_text())
    assert KEYS <= set(result)
    assert result["frames"] == 6
    assert set(result["stages_ms"]) == STAGES
    # every stage ran and took some time, none an absurd amount on 768x576 frames
    assert all(0 < ms < 5000 for ms in result["stages_ms"].values()), result["stages_ms"]
    assert result["fps"] > 0
    # opencv_vtest shows 2-6 pedestrians from the first frame on (YOLOX-Nano finds most of them)
    assert 1 <= result["persons_per_frame"] <= 10
    assert result["crops_per_s"] > 0
    # ru_maxrss of this pytest process, which earlier tests may have raised; the 1.5 GB target is
    # checked on a `livepose video` process of its own (benchmarks/)
    assert result["peak_rss_mb"] >= max(50, peak_before - 1)
    assert result["backend"] == backend and result["precision"] == "f32"
    assert result["model"] == "r18-256x192"
    assert result["detect_every"] == detect_every
    assert result["detector_runs"] == (6 if detect_every == 1 else 2)
    assert "fps" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--max-frames", "0"], "--max-frames"),
    (["--warmup", "-1"], "--warmup"),
    (["--detect-every", "0"], "--detect-every"),
])
def test_bench_refuses_bad_settings_before_loading_models(tmp_path, extra, message):
    from livepose.cli.bench import run as run_bench

    video = shared_path("videos", "opencv_vtest.avi")
    missing_model = tmp_path / "absent.onnx"  # never reached: the settings are checked first
    with pytest.raises(ValueError, match=message):
        run_bench(bench_args([str(video), "--pose-model", str(missing_model), "--no-fetch", *extra]))


def test_bench_names_a_missing_video(tmp_path):
    from livepose.cli.bench import run as run_bench

    with pytest.raises(ValueError, match="missing.avi: no such file"):
        run_bench(bench_args([str(tmp_path / "missing.avi"), "--no-fetch"]))
