"""livepose.runtime.download against a real HTTP server on 127.0.0.1 serving a file from ../shared/data."""
import functools
import hashlib
import http.server
import socket
import threading

import pytest

from conftest import shared_path
from livepose.runtime.download import ChecksumError, DownloadError, fetch, verify_file


@pytest.fixture(scope="module")
def served():
    """(base URL, served file) for ../shared/data/models over HTTP, on a thread, for this module."""
    model = shared_path("models", "yolox_nano.onnx")
    handler = functools.partial(QuietHandler, directory=str(model.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", model
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".download-")]


def test_fetch_with_full_checksum(served, tmp_path):
    url, model = served
    dest = tmp_path / "sub" / "nano.onnx"
    assert fetch(f"{url}/{model.name}", dest, sha256=digest(model), progress=True) == dest
    assert dest.read_bytes() == model.read_bytes()
    assert leftovers(dest.parent) == []


def test_fetch_with_prefix_and_reuse_of_a_verified_copy(served, tmp_path):
    url, model = served
    dest = tmp_path / "nano.onnx"
    fetch(f"{url}/{model.name}", dest, sha256_prefix=digest(model)[:8], progress=False)
    # a verified copy is not fetched again: an unreachable URL still succeeds
    assert fetch("http://127.0.0.1:9/none.onnx", dest, sha256_prefix=digest(model)[:8], progress=False) == dest


def test_checksum_mismatch_is_refused_and_nothing_is_kept(served, tmp_path):
    url, model = served
    dest = tmp_path / "nano.onnx"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as error:
        fetch(f"{url}/{model.name}", dest, sha256=wrong, progress=False)
    message = str(error.value)
    assert model.name in message and wrong in message and digest(model) in message
    assert not dest.exists() and leftovers(tmp_path) == []


def test_prefix_mismatch_names_expected_and_actual(served, tmp_path):
    url, model = served
    with pytest.raises(ChecksumError, match=f"expected deadbeef.*{digest(model)}"):
        fetch(f"{url}/{model.name}", tmp_path / "x.onnx", sha256_prefix="deadbeef", progress=False)


def test_unreachable_server_names_url_and_where_to_put_the_file(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.pth"
    dest = tmp_path / "model.pth"
    with pytest.raises(DownloadError) as error:
        fetch(url, dest, progress=False, timeout=5)
    assert url in str(error.value) and str(dest) in str(error.value)
    assert not dest.exists() and leftovers(tmp_path) == []


def test_missing_file_on_the_server(served, tmp_path):
    url, _ = served
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{url}/no-such-model.onnx", tmp_path / "m.onnx", progress=False)


def test_verify_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"livepose")
    full = hashlib.sha256(b"livepose").hexdigest()
    assert verify_file(path, sha256=full) == full
    assert verify_file(path, sha256_prefix=full[:8].upper()) == full
    assert verify_file(path) == full
    with pytest.raises(ChecksumError, match=str(path)):
        verify_file(path, sha256_prefix="ffffffff" if not full.startswith("ffffffff") else "00000000")
    with pytest.raises(ValueError, match="hex digits"):
        verify_file(path, sha256="xyz")
