"""Data-parallel fit on two gloo CPU processes (paddle.distributed.launch), against one process.

BatchNorm statistics are frozen (--freeze-bn): each rank would otherwise normalise its half batch with
its own statistics (SyncBatchNorm is GPU-only in Paddle), and the two runs would differ by design.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

paddle = pytest.importorskip("paddle", reason="training needs PaddlePaddle: pip install -e '.[train]'")
pytest.importorskip("pycocotools")

from tests.conftest import REPO  # noqa: E402
from tests.train.test_fit import losses, max_difference, run_fit, weights  # noqa: E402

LR = 1e-4
# The all-reduced mean of two half-batch gradients and the one full-batch gradient differ in rounding
# only. Adam divides each gradient by its running RMS, so a weight whose gradient is itself at rounding
# level moves by up to lr in a direction the rounding decides: the largest difference is bounded by a
# fraction of lr, while nearly all weights agree to float precision, drifting slowly with the steps.
# Measured (2 CPU processes vs 1, this test): max 6.1e-7, 99.9th percentile 1.6e-8 after 2 steps; after
# 2 steps, a restart and 2 more, max 9.4e-6, 99.9th percentile 4.6e-7, median 6e-10, while 4 steps
# move the weights by up to 4 lr = 4e-4. Two processes resumed vs two uninterrupted: identical (0.0).
MAX_DIFFERENCE = 0.25 * LR
TYPICAL_DIFFERENCE = 2e-6  # the 99.9th percentile of |w2 - w1| over all weights


def differences(a, b):
    """|a - b| over every weight of two state dicts, flattened (M,)."""
    return np.concatenate([np.abs(a[name] - b[name]).ravel() for name in a])


def check_equal(one, two, label):
    diff = differences(one, two)
    typical = float(np.percentile(diff, 99.9))
    print(f"{label}: max |w(2 processes) - w(1 process)| {diff.max():.3g}, 99.9th percentile {typical:.3g}, "
          f"median {np.median(diff):.3g} over {diff.size} weights")
    assert diff.max() <= MAX_DIFFERENCE and typical <= TYPICAL_DIFFERENCE


def launch(log_dir, *argv):
    """`fit` under paddle.distributed.launch on 2 CPU processes; -> CompletedProcess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(log_dir),
               "train/__main__.py", "fit", *map(str, argv)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def worker_log(log_dir, rank):
    return (log_dir / f"workerlog.{rank}").read_text()


def test_two_gloo_processes_train_and_resume_like_one(coco_subset, tmp_path):
    ann, images = coco_subset
    common = ["--config", "r18-256x192", "--ann", ann, "--images", images, "--batch-size", 4, "--workers", 0,
              "--log-every", 1, "--save-every-steps", 0, "--freeze-bn", "--seed", 3, "--lr", LR]
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_fit(*common, "--out", one, "--max-steps", 2) == 0
    one_halfway = weights(one)[0]
    assert run_fit(*common, "--out", one, "--max-steps", 4, "--resume", "auto") == 0

    first = launch(tmp_path / "launch1", *common, "--out", two, "--max-steps", 2)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    two_halfway, meta = weights(two)
    assert meta.step == 2
    check_equal(one_halfway, two_halfway, "after 2 steps")
    # interrupted after 2 of 4 steps; both ranks resume from the same --out
    second = launch(tmp_path / "launch2", *common, "--out", two, "--max-steps", 4, "--resume", "auto")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    final, meta = weights(two)
    assert meta.step == 4
    check_equal(weights(one)[0], final, "after 2 steps, interruption, resume, 2 steps")
    assert max_difference(two_halfway, final) > 1e-4  # the resumed steps did change the weights

    # rank 0 alone wrote: each step's log row once, the same losses as one process (the global batch's)
    steps, two_losses = zip(*losses(two))
    assert steps == (1, 2, 3, 4)
    np.testing.assert_allclose(two_losses, [loss for _, loss in losses(one)], rtol=1e-5)
    assert len(os.listdir(two / "logs" / "heatmaps")) == 4
    for log_dir in (tmp_path / "launch1", tmp_path / "launch2"):
        assert "batch: 4 global = 2 rank(s) x 2" in worker_log(log_dir, 0)
        assert "batch:" not in worker_log(log_dir, 1)
    assert "resumed from" in worker_log(tmp_path / "launch2", 0)


def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused(coco_subset, tmp_path):
    ann, images = coco_subset
    result = launch(tmp_path / "launch", "--config", "r18-256x192", "--ann", ann, "--images", images,
                    "--batch-size", 3, "--workers", 0, "--out", tmp_path / "out")
    assert result.returncode != 0
    log = worker_log(tmp_path / "launch", 1)
    assert "(rank 1 of 2): error: batch_size (--batch-size): the global batch 3 does not split evenly over 2 ranks" in log
    assert not (tmp_path / "out" / "last.safetensors").exists()


def test_a_rank_without_progress_is_stopped_with_its_rank_named():
    """gloo collectives have no timeout on CPU: the watchdog ends a rank stuck waiting for a hung peer."""
    import time

    from train.fit import RankWatchdog

    messages = []
    with RankWatchdog(0.4, rank=1, on_timeout=messages.append) as watchdog:
        for _ in range(8):  # steps every 0.1 s: alive
            time.sleep(0.1)
            watchdog.beat()
        assert messages == []
        time.sleep(1.0)  # no step: stopped
    assert len(messages) == 1 and "rank 1 finished no step" in messages[0] and "--rank-timeout 0.4" in messages[0]
