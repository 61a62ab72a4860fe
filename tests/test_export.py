"""Export for other tools (hyperspy_hebt.export): the tomviz EMD, read back with
rosettasciio (the first channel, calibrated) and h5py (every channel, tomviz's layout)."""

import h5py
import hyperspy.api as hs
import numpy as np
import pytest
from helpers import make_series

from hyperspy_hebt.export import save_tomviz_emd


@pytest.fixture(scope="module")
def fractions():
    series = make_series(n_x=16, n_slices=5)
    return series.quantify_cross_section(series.reconstruct_sirt(iterations=10,
                                                                 show_progressbar=False))


def _in_array_order(signal, names):
    """The signal's data with its axes put in the order of ``names``."""
    index = {a.name: a.index_in_array for a in signal.axes_manager._axes}
    return np.asarray(signal.data).transpose([index[n] for n in names])


def test_tomviz_emd_reads_back_calibrated_with_every_channel(fractions, tmp_path):
    path = save_tomviz_emd(fractions, tmp_path / "fractions.emd")
    loaded = hs.load(path)  # rosettasciio's EMD reader: the first channel
    source = {a.name: a for a in fractions[0].axes_manager._axes}
    for axis in loaded.axes_manager._axes:
        original = source[axis.name]
        factor = {"nm": 1.0, "µm": 1e3}[original.units]
        assert axis.units == "nm" and axis.size == original.size
        assert axis.scale == pytest.approx(original.scale * factor, rel=1e-6)
        assert axis.offset == pytest.approx(original.offset * factor, rel=1e-6, abs=1e-6)
    names = [a.name for a in loaded.axes_manager._axes]
    np.testing.assert_array_equal(_in_array_order(loaded, names),
                                  _in_array_order(fractions[0], names))
    with h5py.File(path) as f:
        assert (f.attrs["version_major"], f.attrs["version_minor"]) == (0, 2)
        node = f["data/tomography"]
        assert node.attrs["emd_group_type"] == 1
        assert node["data"].attrs["name"] == "Ag"
        assert set(node["tomviz_scalars"]) == {"Ag", "Au"}
        assert isinstance(node["tomviz_scalars"].get("Ag", getlink=True), h5py.SoftLink)
        assert [node[f"dim{k}"].attrs["name"] for k in (1, 2, 3)] == ["x", "y", "z"]
        for signal, name in zip(fractions, ("Ag", "Au")):
            # tomviz's layout: (x, y, z), z fastest.
            np.testing.assert_array_equal(node["tomviz_scalars"][name][()],
                                          _in_array_order(signal, ["x", "y", "z"]))


def test_lazy_volumes_are_written_a_block_at_a_time(fractions, tmp_path):
    eager = save_tomviz_emd(fractions, tmp_path / "eager.emd")
    lazy = save_tomviz_emd([f.as_lazy() for f in fractions], tmp_path / "lazy.emd",
                           block_slices=2)
    with h5py.File(eager) as a, h5py.File(lazy) as b:
        for name in ("Ag", "Au"):
            np.testing.assert_array_equal(a[f"data/tomography/tomviz_scalars/{name}"][()],
                                          b[f"data/tomography/tomviz_scalars/{name}"][()])


def test_bad_exports_are_refused(fractions, tmp_path):
    path = save_tomviz_emd(fractions, tmp_path / "once.emd")
    with pytest.raises(ValueError, match="exists: pass overwrite=True"):
        save_tomviz_emd(fractions, path)
    save_tomviz_emd(fractions, path, overwrite=True)
    with pytest.raises(ValueError, match="signals is empty"):
        save_tomviz_emd([], tmp_path / "none.emd")
    with pytest.raises(ValueError, match="share the channel name"):
        save_tomviz_emd([fractions[0], fractions[0]], tmp_path / "twice.emd")
    other = fractions[1].isig[:8, :]
    with pytest.raises(ValueError, match=r"signals\[1\] is on another grid"):
        save_tomviz_emd([fractions[0], other], tmp_path / "grids.emd")
    with pytest.raises(ValueError, match="block_slices must be a positive integer"):
        save_tomviz_emd(fractions, tmp_path / "block.emd", block_slices=0)
