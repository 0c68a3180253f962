"""Model discovery (flags -> engines/ -> cache) and fetching published weights from a real local HTTP server."""
import functools
import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import pytest

from livepose.files import MediaError
from livepose.runtime import model_files as models
from livepose.runtime.model_files import (
    DETECTOR,
    POSE_CHECKPOINTS,
    FetchError,
    ModelNotFound,
    PublishedFile,
    cache_dir,
    fetch_models,
    obtain_file,
    resolve_models,
)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty engines/ and cache folders, and no mirror unless a test sets one."""
    engines, cache = tmp_path / "engines", tmp_path / "cache"
    engines.mkdir()
    monkeypatch.setenv(models.ENGINES_ENV, str(engines))
    monkeypatch.setenv(models.CACHE_ENV, str(cache))
    monkeypatch.delenv(models.MIRROR_ENV, raising=False)
    return engines, cache


@pytest.fixture
def http_folder(tmp_path):
    """(folder, base URL): a real HTTP server on 127.0.0.1 serving `folder`; stopped after the test."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens: connections are refused, as offline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/models"


def test_cache_folder_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(models.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "livepose"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "livepose"
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_models_come_from_flags_then_engines_then_cache(isolated, r18_onnx, yolox_nano):
    engines, cache = isolated
    cache.mkdir()
    (cache / models.pose_model_name("256x192")).symlink_to(r18_onnx)
    (cache / "yolox_nano.onnx").symlink_to(yolox_nano)
    found = resolve_models(fetch=False)
    assert (found.pose_origin, found.detector_origin) == ("cache", "cache")
    # engines/ wins over the cache; a pose model is told from a detector by its livepose metadata
    (engines / "my_pose.onnx").symlink_to(r18_onnx)
    (engines / "yolox_nano.onnx").symlink_to(yolox_nano)
    found = resolve_models(fetch=False)
    assert (found.pose_model.name, found.detector.name) == ("my_pose.onnx", "yolox_nano.onnx")
    assert (found.pose_origin, found.detector_origin) == ("engines", "engines")
    found = resolve_models(pose_model=r18_onnx, detector=yolox_nano, fetch=False)
    assert (found.pose_model, found.pose_origin, found.detector_origin) == (r18_onnx, "flag", "flag")


def test_a_missing_flag_or_no_model_at_all_is_named(isolated, tmp_path):
    with pytest.raises(MediaError, match="pose model .*absent.onnx: no such file"):
        resolve_models(pose_model=tmp_path / "absent.onnx", fetch=False)
    with pytest.raises(ModelNotFound, match="no pose model and no detector found .*livepose fetch-models"):
        resolve_models(fetch=False)


def test_download_shows_progress_and_is_cached(isolated, http_folder, capfd):
    _, cache = isolated
    served, base = http_folder
    payload = os.urandom(300_000)
    (served / "weights.bin").write_bytes(payload)
    published = PublishedFile("weights.bin", f"{base}/weights.bin", "test weights",
                              sha256=hashlib.sha256(payload).hexdigest())
    path, failure = obtain_file(published, cache)
    assert failure is None and path == cache / "weights.bin" and path.read_bytes() == payload
    assert "weights.bin" in capfd.readouterr().err  # the progress bar names the file
    (served / "weights.bin").unlink()  # the server no longer has it: the cached copy is used
    path, failure = obtain_file(published, cache)
    assert failure is None and path.read_bytes() == payload


def test_a_different_yolox_export_is_refused_by_name(isolated, http_folder, monkeypatch, yolox_nano):
    """../shared/data's yolox_nano.onnx is another export than Megvii's published file."""
    _, cache = isolated
    served, base = http_folder
    (served / "yolox_nano.onnx").symlink_to(yolox_nano)
    monkeypatch.setenv(models.MIRROR_ENV, base)
    with pytest.raises(FetchError) as error:
        fetch_models(want_pose=False, progress=False)
    message = str(error.value)
    assert "refusing yolox_nano.onnx" in message and DETECTOR.sha256 in message
    assert not (cache / "yolox_nano.onnx").exists()
    assert [p.name for p in cache.iterdir()] == []  # no partial download left behind


def test_from_folder_checks_each_file(isolated, tmp_path, yolox_nano):
    local = tmp_path / "downloads"
    local.mkdir()
    (local / "yolox_nano.onnx").symlink_to(yolox_nano)
    with pytest.raises(FetchError, match="refusing yolox_nano.onnx"):
        fetch_models(source_dir=local, want_pose=False)
    checkpoint = POSE_CHECKPOINTS["256x192"]
    (local / checkpoint.name).write_bytes(b"not the MMPose checkpoint")
    with pytest.raises(FetchError, match=f"refusing {checkpoint.name}.*SHA-256 prefix should be ec54d7f3"):
        fetch_models(source_dir=local, want_detector=False)


def test_offline_names_every_url_and_where_to_put_it(isolated, monkeypatch):
    _, cache = isolated
    mirror = closed_port_url()
    monkeypatch.setenv(models.MIRROR_ENV, mirror)
    with pytest.raises(FetchError) as error:
        fetch_models(pose_size="384x288", progress=False)
    message = str(error.value)
    for published in (DETECTOR, POSE_CHECKPOINTS["384x288"]):
        assert f"{mirror}/{published.name}  ->  {cache / published.name}" in message
    assert "--from FOLDER" in message


def test_published_urls_are_the_official_ones():
    assert DETECTOR.url == "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx"
    for size, published in POSE_CHECKPOINTS.items():
        # MMPose names its files with the first 8 hex digits of their SHA-256
        assert published.url.endswith(published.name) and f"-{published.sha256_prefix}_" in published.name
        assert size in published.name


def test_conversion_without_the_train_extra_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "train_command", lambda: None)  # as on an install without paddle
    with pytest.raises(FetchError, match=r"needs the `train` extra .*pip install -e '\.\[train\]'"):
        models.convert_checkpoint(tmp_path / "x.pth", "r50-256x192", tmp_path / "x.onnx")


def test_train_command_runs_in_this_python_when_paddle_is_here():
    pytest.importorskip("paddle", reason="the train extra is not installed")
    command = models.train_command()
    assert command[0] == os.sys.executable and command[1] == "-m" and Path(command[0]).exists()
