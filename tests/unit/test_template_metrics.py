"""Metric definitions of the bundled templates, checked against closed forms and by hand.

diffusion_2d's KL must be the reference's quantity: a k-NN estimate in bits, under the
max-norm, with rho taken among the real points and nu from the real to the generated ones.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from types import ModuleType

import numpy as np
import pytest
from aisci.engine.resources import templates_dir


def _module(template: str, name: str = "experiment") -> ModuleType:
    path = templates_dir() / template / f"{name}.py"
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(f"tpl_metrics_{template}_{name}", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    return mod


@pytest.fixture(scope="module")
def diffusion() -> ModuleType:
    return _module("diffusion_2d")


# Four real and three generated points; distances by hand under the max-norm.
REAL = [(0, 0), (1, 0), (0, 2), (3, 3)]
GENERATED = [(0, 1), (2, 0), (5, 5)]


def test_kl_hand_computed_k1(diffusion):
    # k=1: rho = (1, 1, 2, 3), nu = (1, 1, 1, 2); n=4, m=3, d=2.
    # nats = ln 3 - ln 3 + 2 * (ln2/4 - (ln2 + ln3)/4) = -ln3 / 2 ; bits = -log2(3) / 2
    value = diffusion.knn_kl_divergence(np.array(REAL, float), np.array(GENERATED, float), k=1)
    assert value == pytest.approx(-math.log2(3) / 2, abs=1e-12)


def test_kl_hand_computed_k2(diffusion):
    # k=2: rho = (2, 2, 2, 3), nu = (2, 1, 2, 3)  ->  nats = 2 * (-ln2 / 4) ; bits = -0.5
    value = diffusion.knn_kl_divergence(np.array(REAL, float), np.array(GENERATED, float), k=2)
    assert value == pytest.approx(-0.5, abs=1e-12)


def test_kl_uses_the_max_norm_not_euclidean(diffusion):
    # Under the Euclidean norm rho(3,3) = sqrt(10) and nu(3,3) = sqrt(8): a different value.
    real, gen = np.array(REAL, float), np.array(GENERATED, float)
    rho = [1.0, 1.0, 2.0, math.sqrt(10)]
    nu = [1.0, 1.0, 1.0, math.sqrt(8)]
    euclid = 2 * (np.mean(np.log(nu)) - np.mean(np.log(rho))) / math.log(2)
    assert diffusion.knn_kl_divergence(real, gen, k=1) != pytest.approx(euclid, abs=1e-3)


@pytest.mark.parametrize(("shift", "scale_real", "scale_gen"), [
    ((0.0, 0.0), 1.0, 1.0),
    ((1.0, 0.0), 1.0, 1.0),
    ((1.5, -1.0), 1.0, 1.0),
    ((0.0, 0.0), 1.0, 2.0),
])
def test_kl_matches_two_gaussians_in_closed_form(diffusion, shift, scale_real, scale_gen):
    # KL(N(0, a^2 I) || N(mu, b^2 I)) in d=2, nats:
    #   d * (ln(b/a) + a^2 / (2 b^2) - 1/2) + |mu|^2 / (2 b^2)
    rng = np.random.default_rng(7)
    real = rng.normal(scale=scale_real, size=(20_000, 2))
    gen = np.array(shift) + rng.normal(scale=scale_gen, size=(20_000, 2))
    a, b = scale_real, scale_gen
    nats = 2 * (math.log(b / a) + a * a / (2 * b * b) - 0.5) + float(np.dot(shift, shift)) / (2 * b * b)
    # The k-NN estimate is consistent but biased low when the supports barely overlap.
    expected = nats / math.log(2)
    assert diffusion.knn_kl_divergence(real, gen) == pytest.approx(expected, rel=0.06, abs=0.05)


def test_kl_rejects_bad_shapes_and_duplicates_stay_finite(diffusion):
    with pytest.raises(ValueError, match="same d"):
        diffusion.knn_kl_divergence(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="k=5"):
        diffusion.knn_kl_divergence(np.zeros((5, 2)), np.zeros((10, 2)))
    pts = np.repeat(np.arange(20.0).reshape(10, 2), 8, axis=0)  # every point 8 times
    assert math.isfinite(diffusion.knn_kl_divergence(pts, pts + 0.5))


def test_ema_schedule_is_the_reference_warm_up(diffusion):
    # Copies up to update 100; then 1 - (1 + (u - 101))^(-2/3), capped at 0.995.
    assert diffusion.ema_decay(0) is None and diffusion.ema_decay(100) is None
    assert diffusion.ema_decay(110) == pytest.approx(1 - 10 ** (-2 / 3))
    assert diffusion.ema_decay(1000) == pytest.approx(1 - 900 ** (-2 / 3))
    assert diffusion.ema_decay(5000) == 0.995


def test_ema_update_copies_during_warm_up_and_lerps_after(diffusion):
    import torch
    model, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    state = {"started": False}
    diffusion.update_ema(ema, model, 5, state)  # not an update step: untouched
    assert not torch.equal(ema.weight, model.weight)
    diffusion.update_ema(ema, model, 0, state)
    assert torch.equal(ema.weight, model.weight) and not state["started"]
    before = ema.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    diffusion.update_ema(ema, model, 110, state)  # first after warm-up: copy, then lerp
    assert torch.equal(ema.weight, model.weight) and state["started"]
    with torch.no_grad():
        model.weight.add_(1.0)
    diffusion.update_ema(ema, model, 120, state)
    decay = diffusion.ema_decay(120)
    assert torch.allclose(ema.weight, model.weight - decay, atol=1e-6)
    assert not torch.equal(ema.weight, before)


def test_batches_are_shuffled_passes_without_replacement(diffusion):
    import torch
    gen = torch.Generator().manual_seed(0)
    batches = diffusion.shuffled_batches(1000, 256, gen, "cpu")
    first_pass = torch.cat([next(batches) for _ in range(4)])  # 256*3 + 232
    assert sorted(first_pass.tolist()) == list(range(1000))
    second_pass = torch.cat([next(batches) for _ in range(4)])
    assert sorted(second_pass.tolist()) == list(range(1000))
    assert not torch.equal(first_pass, second_pass)
