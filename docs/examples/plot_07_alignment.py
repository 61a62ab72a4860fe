"""
Alignment, ADF-EDS registration and shadowing
=============================================

Real series drift from tilt to tilt, the ADF image may be offset from the spectrum
image, and the holder shadows a detector at some tilts.
:func:`~hyperspy_hebt.alignment.register_adf_to_eds` finds the ADF's offset,
:func:`~hyperspy_hebt.alignment.align_tilt_series` aligns the series on its ADF
(centre of mass, or phase correlation for objects larger than the field) and applies the
same shifts to the spectra, and :func:`~hyperspy_hebt.alignment.normalise_tilt_totals`
evens out the counts per tilt. Each step records what it found in the metadata.
"""

import matplotlib.pyplot as plt
import numpy as np

from hyperspy_hebt.alignment import align_tilt_series, normalise_tilt_totals, register_adf_to_eds
from hyperspy_hebt.simulation import core_shell_particle, simulate_acquisition

tilts = np.linspace(-75, 75, 31)
rng = np.random.default_rng(1)
drift = np.cumsum(rng.normal(0, 1.0, (31, 2)), axis=0)
shadow = 1 - 0.35 * np.clip(np.sin(np.deg2rad(tilts)), 0, None) ** 2
particle = core_shell_particle(32, 32, pixel_size_nm=3.0, core_radius=0.2, shell_radius=0.35)
acquisition = simulate_acquisition(particle, ["Ag_La", "Au_Ma"],
                                   energy_axis_kev=(0.0, 0.02, 256), drift_px=drift,
                                   adf_offset_px=(1.5, -2.0), eds_tilt_factors=shadow)
series, adf = acquisition.series, acquisition.adf

# %%
# The ADF's offset from the spectrum image, then the drift.
registered = register_adf_to_eds(series, adf)
print("ADF offset found (px):",
      np.round(np.median(registered.metadata.Registration.offsets_px, axis=0), 2),
      "- simulated (-1.5, 2.0) to undo")
aligned, aligned_adf = align_tilt_series(series, registered)
shifts = np.array(aligned.metadata.Alignment.shifts_px)

# %%
# Per-tilt factors that even out the total counts against the shadowing.
maps = aligned.get_lines_intensity(integration_windows=1.0)
normalised = normalise_tilt_totals(maps)
factors = np.array(normalised[0].metadata.Normalisation.factors)

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.5))
ax0.plot(tilts, shifts[:, 1], "o-", label="x shift found")
ax0.plot(tilts, -(drift[:, 1] - drift[:, 1].mean()), "k--", label="-drift x (simulated)")
ax0.set(xlabel="tilt (deg)", ylabel="px")
ax0.legend()
ax1.plot(tilts, factors / factors.mean(), "o-", label="factor found")
ax1.plot(tilts, (1 / shadow) / np.mean(1 / shadow), "k--", label="1 / shadowing (simulated)")
ax1.set(xlabel="tilt (deg)")
ax1.legend()
fig.tight_layout()

# %%
# The aligned, normalised maps go straight into a reconstruction.
reconstructions = aligned.reconstruct_sirt(iterations=30, intensities=normalised,
                                           xray_lines=["Ag_La", "Au_Ma"],
                                           gaussian_sigma=0.8, show_progressbar=False)
record = reconstructions[0].metadata.Reconstruction
print(f"invalid pixels: {record.invalid_pixel_fraction:.1%}; padding {record.padding_px} px")
