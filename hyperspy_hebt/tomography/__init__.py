"""Tomography kernels on plain numpy arrays (no HyperSpy import).

A kernel takes a stack of sinograms ``(n_slices, n_tilts, n_detector)`` and
returns a stack of slices ``(n_slices, n_z, n_x)``; slices are independent, so
a block of them is a unit of work for threads, processes or a dask cluster.
"""

from .bimodal import fit_response_model, fit_response_ratios, hebt, hebt_path, validate_alpha
from .geometry import ParallelBeamGeometry, validate_tilt_angles
from .projector import Projector, build_system_matrix, get_projector, make_projector
from .sirt import sirt, sirt_path, validate_sirt_parameters

__all__ = [
    "ParallelBeamGeometry",
    "fit_response_model",
    "fit_response_ratios",
    "hebt",
    "hebt_path",
    "validate_alpha",
    "Projector",
    "build_system_matrix",
    "get_projector",
    "make_projector",
    "sirt",
    "sirt_path",
    "validate_sirt_parameters",
    "validate_tilt_angles",
]
