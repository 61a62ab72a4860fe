"""
Figures: orthogonal slices, a 3D view, a composition table
==========================================================

:func:`~hyperspy_hebt.figures.orthoslices` shows three orthogonal slices through every
element's volume on one colour scale, :func:`~hyperspy_hebt.figures.render_3d` draws
an iso-surface per element (at most ``max_voxels`` voxels are meshed, so the figure's
memory stays bounded whatever the volume), and
:func:`~hyperspy_hebt.regions.composition_figure` plots a region table.
"""

from hyperspy_hebt.figures import orthoslices, render_3d
from hyperspy_hebt.regions import composition_figure, composition_table
from hyperspy_hebt.simulation import core_shell_particle, simulate_acquisition

particle = core_shell_particle(32, n_slices=24, pixel_size_nm=3.0, core_radius=0.2,
                               shell_radius=0.35)
acquisition = simulate_acquisition(particle, ["Ag_La", "Au_Ma"],
                                   energy_axis_kev=(0.0, 0.02, 256))
series = acquisition.series
fractions = series.quantify_cross_section(series.reconstruct_sirt(
    iterations=50, integration_windows=1.0, gaussian_sigma=0.8, show_progressbar=False))

# %%
# Three orthogonal slices through each weight-fraction volume.
orthoslices(fractions, vmin=0, vmax=1)

# %%
# Iso-surfaces at half weight fraction: the Au-rich core inside the Ag-rich shell.
render_3d(fractions, levels=[0.5, 0.5])

# %%
# The composition of the regions each element dominates.
table = composition_table(fractions, ["inside", "Au dominates", "Ag dominates"])
composition_figure(table)
