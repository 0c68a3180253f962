"""The vectorised heatmap loss equals the tutorial's per-keypoint loop."""
import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from train.loss import HMLoss, heatmap_loss  # noqa: E402


def tutorial_hmloss(heatmap, target, target_weight, k):
    """The tutorial's HMLoss.forward, verbatim apart from names: one slice per keypoint."""
    _, c, h, w = heatmap.shape
    x = heatmap.reshape((-1, k, h * w))
    y = target.reshape((-1, k, h * w))
    wt = target_weight.reshape((-1, k))
    x = x.split(num_or_sections=k, axis=1)
    y = y.split(num_or_sections=k, axis=1)
    wt = wt.split(num_or_sections=k, axis=1)
    parts = []
    for idx in range(k):
        tmp = paddle.scale(x=x[idx] - y[idx], scale=1.0)
        tmp = tmp * tmp
        tmp = paddle.mean(tmp, axis=2)
        parts.append(tmp * wt[idx])
    return 0.5 * paddle.mean(paddle.concat(parts, axis=0))


@pytest.mark.parametrize("n, k, h, w", [(1, 17, 64, 48), (3, 17, 96, 72), (5, 4, 7, 5)])
def test_vectorised_loss_equals_tutorial_loop(n, k, h, w):
    rng = np.random.default_rng(n * 100 + k)
    heatmaps = paddle.to_tensor(rng.standard_normal((n, k, h, w)).astype("float32"))
    targets = paddle.to_tensor(rng.random((n, k, h, w)).astype("float32"))
    weights = paddle.to_tensor((rng.random((n, k, 1)) > 0.3).astype("float32"))
    expected = float(tutorial_hmloss(heatmaps, targets, weights, k))
    assert float(heatmap_loss(heatmaps, targets, weights)) == pytest.approx(expected, rel=1e-5)
    assert float(HMLoss()(heatmaps, targets, weights.reshape([n, k]))) == pytest.approx(expected, rel=1e-5)


def test_zero_weight_joints_do_not_count():
    rng = np.random.default_rng(0)
    heatmaps = rng.standard_normal((2, 3, 4, 4)).astype("float32")
    targets = heatmaps.copy()
    targets[:, 1] += 5.0  # only joint 1 is wrong, and it has weight 0
    weights = np.array([[1, 0, 1], [1, 0, 1]], dtype="float32")
    loss = heatmap_loss(paddle.to_tensor(heatmaps), paddle.to_tensor(targets), paddle.to_tensor(weights))
    assert float(loss) == 0.0
    weights[0, 1] = 1  # one weighted wrong joint of 6: 0.5 * 25 / 6
    loss = heatmap_loss(paddle.to_tensor(heatmaps), paddle.to_tensor(targets), paddle.to_tensor(weights))
    assert float(loss) == pytest.approx(0.5 * 25.0 / 6, rel=1e-6)
