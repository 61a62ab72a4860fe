"""hyperspy-hebt: quantitative EDS-STEM and HAADF-EDS bimodal tomography for HyperSpy.

The signal classes register with HyperSpy through the ``hyperspy.extensions``
entry point, so ``hs.load`` of a saved tilt series returns a
:class:`TomographicEDSSpectrum` (or its lazy twin).
"""

import warnings as _warnings

with _warnings.catch_warnings():
    # exspy (0.3) imports LazySignal1D and LazyComplexSignal1D from HyperSpy's private
    # modules, which HyperSpy 2.3 deprecates with a VisibleDeprecationWarning on every
    # import: about exspy's code, not the user's, printed before anything else. Only
    # those messages, only while exspy is first imported here.
    _warnings.filterwarnings("ignore", message=r"Importing `Lazy\w*` from `hyperspy\._signals")
    import exspy as _exspy  # noqa: F401

from ._version import __version__
from .compute import compute_together
from .export import save_tomviz_emd
from .io import load_tilt_series
from .signals import LazyTomographicEDSSpectrum, TomographicEDSSpectrum
from .tilt_series import stack_tilt_series

__all__ = [
    "LazyTomographicEDSSpectrum",
    "TomographicEDSSpectrum",
    "__version__",
    "compute_together",
    "load_tilt_series",
    "save_tomviz_emd",
    "stack_tilt_series",
]
