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


def test_save_volumes_writes_every_format_silently_and_reads_back(tmp_path):
    """zspy keeps metadata and dtype; tif is a float32 stack with the calibration; the
    caller's float64 signal is not changed; no warning reaches the user (rosettasciio's
    zarr-2 store deprecation was printed on every .zspy)."""
    from hyperspy_hebt.figures import save_volumes

    data = np.random.default_rng(0).random((3, 5, 4))
    signal = hs.signals.Signal2D(data).transpose(signal_axes=[2, 1])
    signal.metadata.General.title = "Fe weight fraction (SIRT)"
    for axis in signal.axes_manager._axes:
        axis.scale, axis.units = 2.5, "nm"
    lazy = signal.as_lazy()
    lazy.metadata.General.title = "O weight fraction (SIRT)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = save_volumes([signal, lazy], tmp_path / "out", formats=("zspy", "tif"))
    assert [p.name for p in written] == [
        "Fe_weight_fraction_SIRT.zspy", "Fe_weight_fraction_SIRT.tif",
        "O_weight_fraction_SIRT.zspy", "O_weight_fraction_SIRT.tif"]
    assert signal.data.dtype == np.float64  # the caller's signal is untouched
    expected = np.asarray(signal.data)
    zspy = hs.load(written[0])
    np.testing.assert_array_equal(zspy.data, expected)
    assert zspy.metadata.General.title == "Fe weight fraction (SIRT)"
    for path in (written[1], written[3]):
        tif = hs.load(path)
        assert tif.data.dtype == np.float32
        np.testing.assert_array_equal(tif.data, expected.astype(np.float32))
        assert [(a.scale, a.units) for a in tif.axes_manager._axes] == [(2.5, "nm")] * 3
