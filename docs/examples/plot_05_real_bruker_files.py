"""
Real files: a Bruker ``.bcf`` series
====================================

:func:`hyperspy_hebt.load_tilt_series` reads one file per tilt as HyperSpy's readers
(rosettasciio) really return them: the scan axes Bruker calls ``width`` and ``height``
become ``x`` and ``y``, the simultaneous ADF image is taken out of each file, the angles
come from the metadata or the file names, and the element list is yours, not the one the
acquisition software found.

A real tilt series is too big for the documentation, so this example makes one from
copies of a small real Bruker file (``test_TEM.bcf``), named by angle. Loading,
axis names, metadata and element lists are real; the "object" is not (every tilt is
the same image), so the composition it gives is only what these counts say.
"""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from hyperspy_hebt import compute_together, load_tilt_series
from hyperspy_hebt.alignment import align_tilt_series
from hyperspy_hebt.line_survey import survey_lines
from hyperspy_hebt.regions import composition_table

files = Path(os.environ["HYPERSPY_HEBT_INSTRUMENT_FILES"])
folder = Path(tempfile.mkdtemp())
for angle in (-40, -20, 0, 20, 40):
    shutil.copy(files / "test_TEM.bcf", folder / f"tilt_{angle}.bcf")
print(sorted(p.name for p in folder.iterdir()))

# %%
# The file's own element list, then ours. The original list and the renamed axes are
# kept in ``original_metadata.tilt_series``.
series, adf = load_tilt_series(str(folder / "tilt_*.bcf"), tilt_from="filename")
print("the file lists:", series.metadata.Sample.elements)
series, adf = load_tilt_series(str(folder / "tilt_*.bcf"), tilt_from="filename",
                               elements=["O", "Ti", "Fe"])
print(series)
print(adf)
print("axes:", [a.name for a in series.axes_manager.navigation_axes],
      "renamed:", series.original_metadata.tilt_series.renamed_axes.as_dictionary())
print("tilt angles:", series.tilt_angles)

# %%
# The sum spectrum against the line list: lines missing from the data, and peaks that
# no listed element explains.
survey = survey_lines(series)
for message in survey.messages():
    print(" -", message)

# %%
# Binned 4x4 (the file is 64 x 64 pixels of few counts), aligned on the ADF and
# reconstructed by SIRT. Pixels the alignment shifts in from outside carry no weight.
binned = series.rebin(scale=(4, 4, 1, 1))
binned_adf = adf.rebin(scale=(1, 4, 4))
aligned, aligned_adf = align_tilt_series(binned, binned_adf)
reconstructions = aligned.reconstruct_sirt(iterations=20, integration_windows=1.0,
                                           gaussian_sigma=0.8, show_progressbar=False)
# The series was loaded lazily: the fractions are computed together, in one pass.
fractions = compute_together(aligned.quantify_cross_section(reconstructions))
inside = composition_table(fractions, ["inside"])["inside"]
print(inside["voxels"], "voxels inside:",
      {element: round(value, 3) for element, value in inside["mean"].items()})

# %%
# The Ti fraction of a slice through the middle (z is the beam direction at 0 degrees).
fractions[1].inav[int(np.argmax(fractions[1].data.sum(axis=(1, 2))))].plot(
    cmap="inferno", vmin=0, vmax=1)
