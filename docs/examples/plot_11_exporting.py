"""
Exporting: HyperSpy files, TIFF stacks, tomviz
==============================================

Results are HyperSpy signals, so ``.save`` writes ``.hspy``/``.zspy`` with every record
in the metadata. :func:`~hyperspy_hebt.figures.save_volumes` writes each volume in
several formats at once (a float32 TIFF stack keeps the calibration), and
:func:`hyperspy_hebt.save_tomviz_emd` writes every element into one EMD file in tomviz's
layout, one channel per element. Each export is read back here with rosettasciio.
"""

import tempfile
from pathlib import Path

import h5py
import hyperspy.api as hs
import numpy as np

from hyperspy_hebt import save_tomviz_emd
from hyperspy_hebt.figures import save_volumes
from hyperspy_hebt.simulation import core_shell_particle, simulate_acquisition

particle = core_shell_particle(32, n_slices=6, pixel_size_nm=3.0)
acquisition = simulate_acquisition(particle, ["Ag_La", "Au_Ma"],
                                   energy_axis_kev=(0.0, 0.02, 256))
series = acquisition.series
fractions = series.quantify_cross_section(series.reconstruct_sirt(
    iterations=50, integration_windows=1.0, gaussian_sigma=0.8, show_progressbar=False))
folder = Path(tempfile.mkdtemp())

# %%
# ``.zspy`` and ``.tif`` of each weight-fraction volume.
written = save_volumes(fractions, folder / "volumes", formats=("zspy", "tif"))
print([p.name for p in written])
back = hs.load(written[0])
print(back, "- the quantification record is kept:", back.metadata.Quantification.method)
stack = hs.load(written[1])
print(stack, [(a.name, round(a.scale, 3), a.units) for a in stack.axes_manager._axes])
print("same data:", np.array_equal(stack.data, fractions[0].data.astype(np.float32)))

# %%
# One tomviz file: the first element as ``data``, every element in ``tomviz_scalars``.
path = save_tomviz_emd(fractions, folder / "fractions.emd")
with h5py.File(path, "r") as f:
    group = f["data/tomography"]
    print("channels:", list(group["tomviz_scalars"]))
    print("x coordinates:", group["dim1"][:3], group["dim1"].attrs["units"])
emd = hs.load(path)
print(emd)
