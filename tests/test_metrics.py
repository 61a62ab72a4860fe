"""The paper's image-quality metrics on textbook cases."""

import numpy as np
import pytest

from hyperspy_hebt.metrics import mse, scaled_mse, structure_ssim


def test_structure_ssim_textbook():
    x = np.arange(12.0).reshape(3, 4)
    assert structure_ssim(x, 2 * x + 3) == pytest.approx(1.0)  # scale and offset invariant
    assert structure_ssim(x, -x) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(10000), rng.standard_normal(10000)
    assert abs(structure_ssim(a, b)) < 0.05  # independent noise: ~0
    mask = np.zeros_like(x, dtype=bool)
    mask[0] = True
    assert structure_ssim(x, x**2, mask=mask) == pytest.approx(np.corrcoef(x[0], x[0] ** 2)[0, 1])
    with pytest.raises(ValueError, match="constant image"):
        structure_ssim(np.ones(5), np.arange(5.0))
    assert structure_ssim(np.ones(5), np.arange(5.0), c=1.0) == pytest.approx(1.0)


def test_mse_and_scaled_mse():
    x = np.array([1.0, 2.0, 3.0])
    assert mse(x, x + 1) == pytest.approx(1.0)
    value, scale = scaled_mse(x, 2 * x)
    assert value == pytest.approx(0.0) and scale == pytest.approx(2.0)
    value, scale = scaled_mse(x, np.array([1.0, 0.0, 0.0]))
    assert scale == pytest.approx(1 / 14)  # <x, y> / <x, x>
    with pytest.raises(ValueError, match="shapes differ"):
        mse(x, x[:2])
