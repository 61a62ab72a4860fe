"""
Real files: a Velox ``.emd`` series with four detectors
=======================================================

Velox stores a spectrum image as a sparse stream and lists each Super-X detector with
its own spectra. :func:`hyperspy_hebt.load_tilt_series` sums them by default
(``detectors="sum"``) or keeps them apart (``detectors="separate"``), and reads each
detector's direction from the file, which the absorption correction needs. As in the
Bruker example, the series is made of copies of one small real file
(``velox_SI_16x16.emd``) named by angle: the reading is real, the object is not.
"""

import os
import shutil
import tempfile
from pathlib import Path

from hyperspy_hebt import compute_together, load_tilt_series
from hyperspy_hebt.detectors import detectors_of
from hyperspy_hebt.regions import composition_table

files = Path(os.environ["HYPERSPY_HEBT_INSTRUMENT_FILES"])
folder = Path(tempfile.mkdtemp())
for angle in (-40, -20, 0, 20, 40):
    shutil.copy(files / "velox_SI_16x16.emd", folder / f"tilt_{angle}.emd")

series, adf = load_tilt_series(str(folder / "tilt_*.emd"), tilt_from="filename",
                               elements=["O", "Ca"])
print(series)
print(adf)
print("file elements:", series.original_metadata.tilt_series.file_elements)
print("beam energy:", series.metadata.Acquisition_instrument.TEM.beam_energy, "keV")

# %%
# The series kept per detector. rosettasciio gives every Super-X detector the same
# default direction (azimuth 0, elevation 35 degrees) in ``metadata``; the file's own
# list in ``original_metadata`` has the real ones, and that is what the absorption
# correction reads.
per_detector, _ = load_tilt_series(str(folder / "tilt_*.emd"), tilt_from="filename",
                                   elements=["O", "Ca"], detectors="separate")
print(len(per_detector), "detectors")
detectors = detectors_of(series)
print("from", detectors.source)
for (azimuth, elevation), share in zip(detectors.angles_deg, detectors.shares):
    print(f"  azimuth {azimuth:6.1f} deg, elevation {elevation:.1f} deg, "
          f"share of the counts {share:.2f}")

# %%
# SIRT and quantification. The file holds about 180 net counts in all: the numbers say
# what these counts allow, no more.
reconstructions = series.reconstruct_sirt(iterations=20, integration_windows=1.0,
                                          gaussian_sigma=0.8, show_progressbar=False)
fractions = compute_together(series.quantify_cross_section(reconstructions))
inside = composition_table(fractions, ["inside"])["inside"]
print(inside["voxels"], "voxels inside:",
      {element: round(value, 3) for element, value in inside["mean"].items()})
fractions[1].plot(cmap="inferno", vmin=0, vmax=1)
