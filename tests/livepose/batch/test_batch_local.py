"""`livepose batch` on local worker processes, on real clips: statuses, resume, Ctrl-C, Parquet."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from batch_clips import jsonl_lines, last_run, make_folder, status_records
from conftest import REPO, decoded_frames
from livepose.cli import main

ONE_WORKER = ["--workers", "1", "--threads-per-worker", "1", "--no-progress", "--no-fetch"]


@pytest.fixture
def models(r18_onnx, yolox_nano):
    return ["--pose-model", str(r18_onnx), "--detector", str(yolox_nano)]


def batch(*args):
    return main(["batch", *map(str, args)])


def outputs(out, kind="jsonl", suffix=".jsonl"):
    return sorted(p.relative_to(out / kind).as_posix() for p in (out / kind).rglob(f"*{suffix}"))


@pytest.mark.slow
def test_good_and_bad_videos_parquet_then_resume_touch_and_force(tmp_path, models, capsys):
    folder = make_folder(tmp_path)
    out = tmp_path / "out"
    two_workers = ["--workers", "2", "--threads-per-worker", "1", "--no-progress", "--no-fetch"]
    assert batch(folder, "--out", out, "--parquet", *models, *two_workers) == 3  # some videos failed
    statuses = {r["video"]: r for r in status_records(out)}
    assert {k: r["status"] for k, r in statuses.items()} == {
        "clip0": "done", "sub/clip1": "done", "clip2": "done", "corrupt": "failed", "notes": "failed"}
    assert "cannot be read as a video" in statuses["notes"]["reason"] and "notes.mp4" in statuses["notes"]["reason"]
    assert "corrupt.mp4" in statuses["corrupt"]["reason"]
    error = capsys.readouterr().err
    assert "3 done, 2 failed" in error and "failed corrupt:" in error and "failed notes:" in error
    for key in ("clip0", "sub/clip1", "clip2"):
        frames = decoded_frames(folder / f"{key}.mp4")[0]
        assert [r["frame"] for r in jsonl_lines(out / "jsonl" / f"{key}.jsonl")] == list(range(frames))
        assert statuses[key]["frames"] == frames == 5
    assert not (out / ".partial").exists()
    run = [r for r in jsonl_lines(out / "batch.jsonl") if r["event"] == "run"][0]
    assert [m["name"] for m in run["models"]] == ["r18-256x192.onnx", "yolox_nano.onnx"]
    assert all(len(m["sha256"]) == 64 for m in run["models"]) and run["livepose"]
    check_parquet(out, ["clip0", "sub/clip1", "clip2"])

    (folder / "corrupt.mp4").unlink()
    (folder / "notes.mp4").unlink()
    written = {p: p.stat().st_mtime_ns for p in (out / "jsonl").rglob("*.jsonl")}
    assert batch(folder, "--out", out, *models, *ONE_WORKER) == 0
    assert last_run(out) == {"clip0": "skipped", "sub/clip1": "skipped", "clip2": "skipped"}
    assert "nothing left to do, no worker started" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in written} == written

    os.utime(folder / "clip2.mp4", ns=(time.time_ns(), time.time_ns()))
    assert batch(folder, "--out", out, *models, *ONE_WORKER) == 0
    assert last_run(out) == {"clip0": "skipped", "sub/clip1": "skipped", "clip2": "done"}
    assert batch(folder, "--out", out, *models, *ONE_WORKER, "--force") == 0
    assert last_run(out) == {"clip0": "done", "sub/clip1": "done", "clip2": "done"}


def check_parquet(out, keys):
    """The Parquet files read back with pyarrow as one dataset: the documented schema, one row per
    person of the JSONL, the frame count in each file's metadata."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from livepose.batch.parquet import KEYPOINT_COLUMNS, pose_schema

    assert outputs(out, "parquet", ".parquet") == sorted(f"{key}.parquet" for key in keys)
    table = ds.dataset(out / "parquet", format="parquet").to_table()
    assert table.schema.remove_metadata() == pose_schema().remove_metadata()
    assert len(KEYPOINT_COLUMNS) == 51 and table.schema.field("track_id").nullable
    # batch runs the tracker as `livepose video` does: every person has an id, the JSONL's
    assert table.column("track_id").null_count == 0
    pandas = pytest.importorskip("pandas")  # the README's pandas line reads the same folder
    assert len(pandas.read_parquet(out / "parquet")) == len(table)
    for key in keys:
        records = jsonl_lines(out / "jsonl" / f"{key}.jsonl")
        rows = table.filter(pa.compute.equal(table.column("video"), key))
        assert len(rows) == sum(len(r["persons"]) for r in records) > 0
        first = next(p for r in records for p in r["persons"])
        assert rows.column("box_x1")[0].as_py() == pytest.approx(first["box"][0], abs=1e-2)
        assert rows.column("nose_score")[0].as_py() == pytest.approx(first["keypoints"][0][2], abs=1e-3)
        assert rows.column("track_id").to_pylist() == [p["track_id"] for r in records for p in r["persons"]]
        metadata = pq.read_schema(out / "parquet" / f"{key}.parquet").metadata
        assert int(metadata[b"livepose.frames"]) == len(records) == 5


@pytest.mark.slow
def test_ctrl_c_leaves_complete_outputs_and_a_status_file_a_rerun_continues_from(tmp_path, r18_onnx, yolox_nano):
    folder = make_folder(tmp_path, good=6, bad=False)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "livepose", "batch", str(folder), "--out", str(out), "--pose-model", str(r18_onnx),
               "--detector", str(yolox_nano), *ONE_WORKER]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "batch.jsonl").is_file() and any(r["status"] == "done" for r in status_records(out)):
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130, process.stderr.read()
    assert "run the same command again to continue" in process.stderr.read()
    done = {r["video"] for r in status_records(out) if r["status"] == "done"}
    assert 1 <= len(done) < 6
    assert outputs(out) == sorted(f"{key}.jsonl" for key in done)  # nothing else under a final name
    assert all(len(jsonl_lines(out / "jsonl" / f"{key}.jsonl")) == 5 for key in done)
    assert not any((out / ".partial").rglob("*")) if (out / ".partial").exists() else True
    assert main(["batch", str(folder), "--out", str(out), "--pose-model", str(r18_onnx), "--detector", str(yolox_nano),
                 *ONE_WORKER]) == 0
    assert {k for k, s in last_run(out).items() if s == "skipped"} == done
    assert len(outputs(out)) == 6


def test_bad_inputs_are_one_line_naming_them(tmp_path, models, capsys):
    folder = make_folder(tmp_path, good=1, bad=False)
    cases = [
        ([str(tmp_path / "missing*.mp4"), "--out", tmp_path / "o"], "no videos matched .*missing\\*\\.mp4"),
        ([folder, "--out", folder / "results"], "inside the input folder"),
        (["rtsp://127.0.0.1:8554/live", "--out", tmp_path / "o"], "live source"),
        ([folder, "--out", tmp_path / "o", "--workers", "0"], "--workers: expected a positive integer"),
    ]
    for args, message in cases:
        assert batch(*args, *models, "--no-progress") == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1, error
        assert re.search(message, error[0]), error[0]
    assert not (folder / "results").exists()  # a refused --out is not created inside the input folder


@pytest.mark.parametrize("flag,module,extra", [("--ray", "ray", "livepose[cluster]"),
                                               ("--parquet", "pyarrow", "livepose[cluster]")])
def test_a_missing_optional_library_says_which_extra_installs_it(tmp_path, models, capsys, monkeypatch, flag, module,
                                                                  extra):
    folder = make_folder(tmp_path, good=1, bad=False)
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: import raises ImportError
    assert batch(folder, "--out", tmp_path / "o", flag, *models, "--no-progress") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and extra in error[0] and flag in error[0]
