"""
Choosing method, iterations and alpha by held-out tilts
=======================================================

The paper chose the number of iterations and HEBT's ``alpha`` against a known phantom.
On your data there is none:
:meth:`~hyperspy_hebt.TomographicEDSSpectrum.cross_validate` splits the tilts into
folds, reconstructs each fold's other tilts, projects the result onto the held-out
tilts and scores the prediction of the measured line maps (Poisson deviance per pixel,
about 1 for a perfect prediction). ``alpha="auto"`` and ``iterations="auto"`` make this
choice inside the reconstruct methods.
"""

from hyperspy_hebt.simulation import core_shell_particle, simulate_acquisition

particle = core_shell_particle(32, n_slices=4, pixel_size_nm=3.0)
acquisition = simulate_acquisition(particle, ["Ag_La", "Au_Ma"],
                                   energy_axis_kev=(0.0, 0.02, 256),
                                   eds_dose_electrons=3e7)
series, adf = acquisition.series, acquisition.adf

# %%
# Score SIRT and HEBT over a small grid (two slices are enough to choose).
scores = series.cross_validate(adf, methods=("sirt", "hebt"), iterations=(20, 50, 100),
                               alphas=(0.0, 0.8), holdout=4, integration_windows=1.0,
                               gaussian_sigma=0.8, slices=2)
print("best overall:", scores.setting())
for line in ("Ag_La", "Au_Ma"):
    print(line, scores.setting(line))
scores.plot()

# %%
# The same choice made inside the method: the record says what was chosen and why.
reconstructions = series.reconstruct_hebt(adf, alpha="auto", iterations="auto",
                                          integration_windows=1.0, gaussian_sigma=0.8,
                                          show_progressbar=False)
record = reconstructions[0].metadata.Reconstruction
print(record.algorithm, record.iterations, "iterations")
print(record.AutomaticChoice)
