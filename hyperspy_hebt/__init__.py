"""hyperspy-hebt: quantitative EDS-STEM and HAADF-EDS bimodal tomography for HyperSpy.

The signal classes register with HyperSpy through the ``hyperspy.extensions``
entry point, so ``hs.load`` of a saved tilt series returns a
:class:`TomographicEDSSpectrum` (or its lazy twin).
"""

from ._version import __version__
from .compute import compute_together
from .io import load_tilt_series
from .signals import LazyTomographicEDSSpectrum, TomographicEDSSpectrum
from .tilt_series import stack_tilt_series

__all__ = [
    "LazyTomographicEDSSpectrum",
    "TomographicEDSSpectrum",
    "__version__",
    "compute_together",
    "load_tilt_series",
    "stack_tilt_series",
]
