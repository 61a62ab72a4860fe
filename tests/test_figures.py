"""The pipeline's figures (hyperspy_hebt.figures) on volumes that real data produce."""

import warnings

import hyperspy.api as hs
import matplotlib
import numpy as np

from hyperspy_hebt.figures import render_3d

matplotlib.use("Agg")


def _volume(data, title):
    signal = hs.signals.Signal2D(data.astype(np.float32)).transpose(signal_axes=[2, 1])
    signal.metadata.General.title = title
    return signal


def test_render_3d_names_a_flat_volume_instead_of_warning():
    """A flat volume (no counts, or a constant) has no isosurface: the picture says which,
    and matplotlib's "no artists with labels" warning is not left for the user."""
    ball = np.zeros((12, 12, 12))
    ball[3:9, 3:9, 3:9] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mixed = render_3d([_volume(ball, "Ca"), _volume(np.zeros_like(ball), "O")])
        flat = render_3d([_volume(np.zeros_like(ball), "O")])
    texts = [t.get_text() for t in mixed.axes[0].texts]
    assert texts == ["no surface (flat volume): O"]
    assert [t.get_text() for t in mixed.axes[0].get_legend().get_texts()] == ["Ca"]
    assert flat.axes[0].get_legend() is None
    assert [t.get_text() for t in flat.axes[0].texts] == ["no surface (flat volume): O"]
