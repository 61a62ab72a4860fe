"""Synthetic tilt series of known objects: phantoms, thin-film counts, spectra, ADF images.

- :mod:`.phantoms`: core-shell particles (the paper's 2D slice, a 3D sphere) and a
  silicate grain with an Fe-rich inclusion (the absorption test object).
- :mod:`.forward`: the thin-film model (paper Eq. 4-14) and a projector independent
  of the reconstruction's (a 2x finer grid), so tests do not commit the inverse crime.
- :mod:`.acquisition`: EDS spectrum-image series (Gaussian peaks at exspy's line
  energies and weights, detector resolution, background, Poisson noise) and ADF
  series, with calibrated axes and metadata; :func:`simulate_acquisition` does it all
  from weight-fraction maps of any elements.
- :mod:`.absorption`: X-rays attenuated on their way to each detector, by a path
  integral of its own (:func:`attenuated_projections`).
- :mod:`.realistic`: :func:`simulate_lamella_series` writes a FIB-lamella series with
  the faults of real data (cap, stray lines, zero peak, ADF saturation and clipping,
  hot pixels, drift with a jump, a long element list, the reader's axis names).
"""

from .absorption import attenuated_projections, path_optical_depth
from .acquisition import (
                          SimulatedAcquisition,
                          demo_acquisition,
                          simulate_acquisition,
                          synthetic_adf_series,
                          synthetic_tilt_series,
                          write_acquisition_files,
)
from .forward import (
                          AVOGADRO,
                          DemoSlice,
                          alloy_density,
                          demo_sinograms,
                          project_volume,
                          thin_film_adf_counts,
                          thin_film_line_counts,
)
from .phantoms import (
                          Phantom,
                          core_shell_particle,
                          core_shell_phantom,
                          paper_phantom,
                          silicate_grain,
)
from .realistic import RealisticSeries, simulate_lamella_series

__all__ = [
    "AVOGADRO",
    "DemoSlice",
    "Phantom",
    "RealisticSeries",
    "SimulatedAcquisition",
    "demo_acquisition",
    "paper_phantom",
    "simulate_acquisition",
    "simulate_lamella_series",
    "alloy_density",
    "demo_sinograms",
    "attenuated_projections",
    "path_optical_depth",
    "silicate_grain",
    "core_shell_particle",
    "core_shell_phantom",
    "project_volume",
    "synthetic_adf_series",
    "synthetic_tilt_series",
    "thin_film_adf_counts",
    "thin_film_line_counts",
    "write_acquisition_files",
]
