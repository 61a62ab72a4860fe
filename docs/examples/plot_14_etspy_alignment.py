"""
An alignment made in etspy, applied to the spectra
==================================================

`etspy <https://github.com/usnistgov/etspy>`_ (HyperSpy's tomography package) aligns
HAADF tilt series. If you aligned the ADF images there,
:func:`~hyperspy_hebt.etspy_bridge.align_like_etspy` moves the spectra the same way: it
reads the stack's per-tilt shifts and its global translation, checks that the stack
belongs to your series (same tilts, same pixels) and returns the spectra shifted, with
the stack's images as the ADF series. etspy need not be installed: a stack etspy saved
(``.hspy``) carries everything in its metadata.

The stack here was aligned by etspy 1.3 itself (``stack_register("PC")`` then
``trans_stack(xshift=1, yshift=-0.5)``, by ``tests/data/make_etspy_fixture.py``) from
the ADF images of the drifting particle simulated below.
"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from hyperspy_hebt.etspy_bridge import align_like_etspy
from hyperspy_hebt.simulation import core_shell_particle, simulate_acquisition

# The same simulation as the stack's source (tests/test_etspy.py): 21 tilts, a random
# drift of about a pixel per tilt.
tilts = np.linspace(-70, 70, 21)
drift = np.cumsum(np.random.default_rng(3).normal(0, 1.0, (21, 2)), axis=0)
particle = core_shell_particle(32, 32, pixel_size_nm=3.0, core_radius=0.2, shell_radius=0.3)
acquisition = simulate_acquisition(particle, ["Ag_La", "Au_Ma"], tilt_angles_deg=tilts,
                                   energy_axis_kev=(0.0, 0.02, 200), drift_px=drift, seed=5)
series = acquisition.series

# The stack lives in the repository's tests/data; look upwards from wherever this runs
# (sphinx-gallery runs it from the docs folder, a reader from the examples folder).
FIXTURE = Path("tests") / "data" / "etspy_aligned_adf.hspy"
stack_file = next(folder / FIXTURE for folder in (Path.cwd(), *Path.cwd().parents)
                  if (folder / FIXTURE).is_file())

# %%
# Apply etspy's alignment to the spectra.
aligned, adf = align_like_etspy(series, stack_file)
record = aligned.metadata.Alignment
print(record.method, "- etspy's translation (x, y):", record.etspy_xshift_px,
      record.etspy_yshift_px)
print("first shifts (dy, dx):", np.round(record.shifts_px[:3], 2).tolist())
print(f"pixels valid at every tilt: {record.valid_fraction:.0%}")

# %%
# The EDS maps now sit where etspy put the ADF images: the x centre of mass of each
# tilt, before and after, against the ADF's.


def centre_x(images):
    """Each tilt's x centre of mass (px)."""
    images = np.clip(np.asarray(images, dtype=float), 0, None)
    return (images * np.arange(images.shape[2])).sum(axis=(1, 2)) / images.sum(axis=(1, 2))


def summed_maps(signal):
    """The sum of the line maps (1-FWHM windows), (tilt, y, x)."""
    return sum(np.asarray(m.data) for m in signal.get_lines_intensity(integration_windows=1.0))


fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(tilts, centre_x(summed_maps(series)), "o-", label="EDS maps, as recorded")
ax.plot(tilts, centre_x(summed_maps(aligned)), "s-", label="EDS maps, etspy's alignment")
ax.plot(tilts, centre_x(adf.data), "k--", label="ADF aligned by etspy")
ax.set(xlabel="tilt (deg)", ylabel="x centre of mass (px)")
ax.legend()
fig.tight_layout()

# %%
# The aligned series reconstructs as after this package's own alignment; the pixels
# shifted in from outside the images carry no weight.
reconstructions = aligned.reconstruct_sirt(iterations=30, integration_windows=1.0,
                                           gaussian_sigma=0.8, show_progressbar=False)
print(reconstructions[0].metadata.Reconstruction.invalid_pixels)
