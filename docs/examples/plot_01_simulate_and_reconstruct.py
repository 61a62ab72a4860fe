"""
Simulate a tilt series and reconstruct it with SIRT
===================================================

A core-shell Ag-Au particle is turned into a tilt series of real EDS spectrum images
(Gaussian peaks at exspy's line energies, a background, Poisson noise) and ADF images.
The series is a :class:`~hyperspy_hebt.TomographicEDSSpectrum`: navigation
``(x, y, tilt)``, signal the energy. Each X-ray line is reconstructed by SIRT, slice by
slice along the rotation axis ``y``.
"""

import matplotlib.pyplot as plt

from hyperspy_hebt.simulation import core_shell_particle, simulate_acquisition

# %%
# A particle 32 pixels across (3 nm each) over 4 slices, 31 tilts from -75 to 75 degrees.
particle = core_shell_particle(32, n_slices=4, pixel_size_nm=3.0)
acquisition = simulate_acquisition(particle, ["Ag_La", "Au_Ma"],
                                   energy_axis_kev=(0.0, 0.02, 256))
series, adf = acquisition.series, acquisition.adf
print(series)
print("tilts (deg):", series.tilt_angles[:4], "...", series.tilt_angles[-1])

# %%
# One spectrum, through exspy's own plot (the X-ray lines are marked).
series.inav[16, 2, 15].plot(True)

# %%
# SIRT of each line's 1-FWHM window intensity. The result is one ``Signal2D`` stack per
# line: navigation ``y`` (the slices), signal ``(x, z)``.
reconstructions = series.reconstruct_sirt(iterations=50, integration_windows=1.0,
                                          gaussian_sigma=0.8)
print(reconstructions[0])
print(reconstructions[0].metadata.Reconstruction.algorithm,
      reconstructions[0].metadata.Reconstruction.iterations, "iterations")

# %%
# The middle slice of each line against the phantom's weight fraction.
fig, axes = plt.subplots(2, 2, figsize=(7, 6))
for row, (element, rec) in enumerate(zip(["Ag", "Au"], reconstructions)):
    axes[row, 0].imshow(acquisition.truth[element].data[2], cmap="inferno")
    axes[row, 0].set_title(f"{element} weight fraction (phantom)")
    axes[row, 1].imshow(rec.data[2], cmap="inferno")
    axes[row, 1].set_title(f"{rec.metadata.General.title}")
for ax in axes.flat:
    ax.axis("off")
fig.tight_layout()
