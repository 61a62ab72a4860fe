"""
Lazy, out of core: series larger than memory
============================================

A lazy tilt series (``hs.load(..., lazy=True)``, or ``lazy=True`` here) is a
:class:`~hyperspy_hebt.LazyTomographicEDSSpectrum`. Its reconstructions and weight
fractions are dask graphs: nothing is computed until they are saved or computed, and
then one block of slices at a time, so memory is bounded by a block, not by the series.
:func:`hyperspy_hebt.compute_together` computes several results in one pass over the
spectra (the line maps are read once for every element).
"""

import tempfile
from pathlib import Path

import hyperspy.api as hs
import numpy as np

from hyperspy_hebt import compute_together
from hyperspy_hebt.simulation import core_shell_particle, simulate_acquisition

particle = core_shell_particle(32, n_slices=8, pixel_size_nm=3.0)
acquisition = simulate_acquisition(particle, ["Ag_La", "Au_Ma"],
                                   energy_axis_kev=(0.0, 0.02, 256), lazy=True)
series = acquisition.series
print(series)
print("spectra chunks:", series.data.chunksize)

# %%
# Save the series as ``.zspy`` (written chunk by chunk) and load it back lazily: the
# signal class and the tilt angles come back with it.
folder = Path(tempfile.mkdtemp())
series.save(folder / "series.zspy")
loaded = hs.load(folder / "series.zspy", lazy=True)
print(type(loaded).__name__, loaded.tilt_angles[:3], "...")

# %%
# Reconstruct and quantify: still nothing computed.
reconstructions = loaded.reconstruct_sirt(iterations=50, integration_windows=1.0,
                                          gaussian_sigma=0.8, slices_per_block=2,
                                          show_progressbar=False)
fractions = loaded.quantify_cross_section(reconstructions)
print(fractions[0])
print("graph of the Ag fractions:", len(fractions[0].data.dask), "tasks")

# %%
# Saving computes block by block; ``compute_together`` brings several into memory in
# one pass.
fractions[0].save(folder / "Ag_weight_fraction.zspy")
computed = compute_together(fractions)
eager = loaded.deepcopy()
eager.compute()  # in place: now a TomographicEDSSpectrum in memory
eager_fractions = eager.quantify_cross_section(eager.reconstruct_sirt(
    iterations=50, integration_windows=1.0, gaussian_sigma=0.8, show_progressbar=False))
print("lazy - eager, largest difference:",
      max(float(np.abs(a.data - b.data).max()) for a, b in zip(computed, eager_fractions)))
