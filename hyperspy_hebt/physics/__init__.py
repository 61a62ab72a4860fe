"""Physics of the thin-film model (paper Eq. 4-18): no HyperSpy signals here.

Cross sections in barn, energies in keV, factors in barn mol/g. The
Bote-Salvat parameter tables (NIST, public domain) ship with the package (see
:mod:`hyperspy_hebt.physics._data`); ``HYPERSPY_HEBT_DATA_DIR`` names another
folder to read them from.
"""

from ._data import DATA_DIR_VARIABLE, DataUnavailableError
from .cross_sections import (
    elastic_cross_section,
    ionization_cross_section,
    subshell_ionization_cross_section,
)
from .detector import DetectorEfficiency, detector_efficiency_for_line, line_energy_kev
from .detector_model import DetectorModel, Layer
from .factors import adf_per_eds_factor, eds_factor, haadf_factor
from .xray_data import (
    atomic_number,
    atomic_weight,
    fluorescence_yield,
    ionized_subshell,
    line_fraction,
    mass_density,
    split_xray_line,
)

__all__ = [
    "DATA_DIR_VARIABLE",
    "DataUnavailableError",
    "DetectorEfficiency",
    "DetectorModel",
    "Layer",
    "adf_per_eds_factor",
    "atomic_number",
    "atomic_weight",
    "detector_efficiency_for_line",
    "eds_factor",
    "elastic_cross_section",
    "fluorescence_yield",
    "haadf_factor",
    "ionization_cross_section",
    "ionized_subshell",
    "line_energy_kev",
    "line_fraction",
    "mass_density",
    "split_xray_line",
    "subshell_ionization_cross_section",
]
