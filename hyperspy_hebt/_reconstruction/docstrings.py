"""Parameter descriptions shared by the signal methods: one text per keyword.

A method's docstring names a shared parameter by a line holding only ``<name>``;
:func:`shared_parameters` puts the ``name : type`` line and its description there,
indented like the placeholder. Lines that follow it, indented as a description, add
what is particular to that method (as HyperSpy and exspy share theirs).
"""

from __future__ import annotations

import re

#: keyword -> (type, description)
PARAMETERS: dict[str, tuple[str, str]] = {
    "xray_lines": ('list of str, optional', """\
Lines to reconstruct, e.g. ``["Ag_La", "Au_Ma"]``. Default: as exspy's
``get_lines_intensity`` (``metadata.Sample.xray_lines``, else the
alpha lines of ``metadata.Sample.elements`` within the energy range)."""),
    "intensities": ('list of signals, optional', """\
Precomputed line intensities (model fitting, NMF, ...), one per line,
each with data shaped like the navigation of this signal
(``(tilt, y, x)``), eager or lazy. Line names come from ``xray_lines``
or from each signal's ``metadata.Sample.xray_lines``. When given, the
spectra are not integrated."""),
    "integration_windows": ('float or array (n_lines, 2)', """\
Width of the integration windows in units of the line FWHM, or the
windows in energy units (exspy's convention). Default 2 FWHM, exspy's. A window catches
a share of its line that depends on its width and on where the channel edges fall
(0.62-0.78 at 1 FWHM and 20 eV channels, 0.96-0.98 at 2 FWHM): each line's share is
measured (the line alone, as the detector draws it, through exspy's integration) and
recorded as ``metadata.Reconstruction.intensities.window_share``, and
``quantify_cross_section`` divides by it, so the width does not move the composition of
isolated lines. Wide windows also take in neighbouring lines (Au Mb with Au Ma: +17 %
Au counts; a warning names such overlaps), which no share undoes: use narrower windows
(1 FWHM, the command line's default) or fitted intensities
(``fit_line_intensities``)."""),
    "background_windows": ('None, "auto" or array (n_lines, 4)', """\
Background windows in energy units (exspy's convention); ``"auto"``
uses ``estimate_background_windows``. None: no background subtraction."""),
    "gaussian_sigma": ('float or dict, optional', """\
Gaussian filter of the line-intensity maps before reconstruction, in
pixels. A number filters the spatial axes of each tilt's map; a dict
gives sigma per navigation axis name, e.g. ``{"x": 0.8, "tilt": 0.8}``
filters the sinograms as in the paper."""),
    "relaxation": ('float', """\
Relaxation factor in (0, 2)."""),
    "positivity": ('bool', """\
Set negative voxels to zero after every iteration (the paper's choice)."""),
    "show_progressbar": ('bool, optional', """\
Progress bar for eager signals; default: HyperSpy's preference."""),
    "rotation_axis": ('str', """\
Name of the navigation axis parallel to the specimen rotation axis
(``"y"`` or ``"x"``); the other spatial axis is the scan direction."""),
    "slices_per_block": ('int', """\
Slices reconstructed together (one dask block of a lazy result), at
most: fewer when their volumes would pass 64 MB (a padded grid)."""),
    "normalise_tilts": ('bool', """\
Scale each line's map to the same total at every tilt (detector
shadowing; the paper's correction). Computes the totals now (one pass
over a lazy series); the factors go to the metadata."""),
    "padding_px": ('int or "auto"', """\
Columns added to the reconstruction grid on each side of the scan, for
objects wider than the field (lamellae): their mass outside the field
crosses the edge rays at high tilt and would otherwise pile up at the
edges of the volume. The padded columns are reconstructed and cropped
from the result. ``"auto"``: when the summed line maps are still
bright at the scan's edges (the outermost column above 25 % of the
brightest column, on average over slices and tilts), enough columns
for every ray to stay in the grid through the slab
(``(w/2 (1 + sin t)) / cos t - w/2`` for width ``w`` and largest tilt
``t``: 2.3 w per side at 70 degrees, so a 5.7x larger grid and cost);
else 0. Reads the maps (lazy series: once); give a
number to keep a lazy series fully lazy."""),
    "invalid_pixels": ('"auto", None or boolean array', """\
Pixels with no valid data, given no weight (they are not read as "no
mass"). ``"auto"``: those that :func:`~hyperspy_hebt.alignment.align_tilt_series`
shifted in from outside the images (from ``metadata.Alignment``), none
for a series that was not aligned. An array: True where there is no
data, shaped like the navigation in array order (``(tilt, y, x)``)."""),
    "backend": ('{"cpu", "cupy", "auto"}', """\
Where the iterations run: ``"cpu"`` (numba, every core), ``"cupy"``
(a CUDA GPU through CuPy, same results to float32 rounding), ``"auto"``
(CuPy when it is installed and sees a device, else the CPU). Eager
signals resolve it now (a missing GPU is an error here); the blocks
of a lazy result resolve it where they run, e.g. on a cluster's GPU
workers. Recorded in ``metadata.Reconstruction.backend``."""),
    "thickness_nm": ('float, optional', """\
Specimen thickness along the beam at 0 degrees (nm; a FIB lamella's, say
150): voxels farther than half of it from the mid-plane through the tilt
axis (z = 0) are held at 0 (a support constraint). Without it the slab is
as deep as the scan is wide, and the missing wedge spreads a thin
lamella's mass through all of it as streaks. Needs the scan axis
calibrated in a length; recorded in ``metadata.Reconstruction``
(``support``, ``thickness_nm``)."""),
    "adf": ('Signal2D or array', """\
The HAADF/ADF tilt series recorded with the spectra: a ``Signal2D``
stack (navigation: tilt; signal: x, y) or any signal/array whose data
is shaped like this signal's navigation (``(tilt, y, x)``), eager or
lazy. Same pixels and tilts (checked against its ``tilt`` axis if
it has one); never modified. The ADF is not Gaussian-filtered."""),
    "response_ratios": ('None, "physics" or dict', """\
None: fitted by non-negative least squares of the ADF on the EDS maps
over every pixel and tilt (Eq. 15), with R^2 reported. ``"physics"``:
``r_A = s z_A / f_A`` (Eq. 16, from the cross sections at this
signal's beam energy and ``detector_efficiency``), only the dose
constant ``s`` fitted: robust where the per-line fit is bent (a softly
saturating ADF, nearly proportional maps). A dict ``{xray_line: r_A}``
(ADF counts per EDS count): yours. For a lazy series the fits compute
the line-intensity maps once (one pass over the spectra); give a dict
and ``padding_px`` to keep everything lazy."""),
    "exclude_clipped": ('bool', """\
Leave ADF pixels piled up at the top of the range (saturation) or at a
raised floor (black-level clipping) out of the ratio fit and of the ADF
term. Changes nothing when there are none."""),
    "adf_offset": ('bool', """\
Fit an ADF offset (dark level) with the ratios, ``I_H = sum r_A I_A +
b``, and reconstruct ``I_H - b``."""),
    "unlisted_mass": ('bool', """\
Reconstruct an extra volume seen by the ADF only (carbon support, FIB
layers, elements not listed), so that their signal does not leak into
the listed elements; it is returned last."""),
    "ratio_floor": ('float, optional', """\
Raise every ratio to at least this fraction of the median ratio, so a
near-zero ratio cannot let the shared ADF term swamp its element."""),
    "detector_efficiency": ('float, dict or callable', """\
EDS detector efficiency per line (as for :meth:`quantify_cross_section`),
used by ``response_ratios="physics"`` and by the check that fitted
ratios follow the cross sections (a fitted pattern more than 1.5x off is
reported in ``Diagnostics``)."""),
    "absorption_correction": ('bool or "exact"', """\
Correct the X-ray lines' absorption in the specimen on their way to the
detectors (issue 15), in 3D: each voxel's path to each detector at each
tilt, through the composition the reconstruction itself gives. The
reconstruction and the quantification are iterated (reconstruct,
quantify with ``quantify_cross_section``'s defaults, attenuate, correct
the maps, reconstruct again) until no element's mean weight fraction
changes by more than 0.002 (at most 8 passes; refused otherwise). The
passes only estimate the composition, so they run as SIRT on a grid
twice as coarse (the maps binned 2 x 2) when the object is large enough
there (at least 0.7 of it a coarse voxel inside its surface; else on the
reconstruction's grid, and the metadata says why); the chosen algorithm
then runs once, at its full resolution and iterations, on the maps
divided by the settled correction: lazy and distributed like an
uncorrected run. Tested against passes on the reconstruction's own grid
(``"exact"``, which costs more): within 0.13 wt% on a 40-voxel grain.
The results are thin-film equivalent (what the lines would give
unabsorbed): quantify them as usual. Needs one line per element, a
calibrated scan axis and numbers for ``iterations`` (and ``alpha``): run
"auto" first and pass what it chose. The passes hold the binned maps and
their volumes in memory (a path out of a voxel crosses other slices).
What was applied, pass by pass: ``metadata.Reconstruction.Absorption``.
Attenuation comes from the listed elements only, inside the grid."""),
    "density": ('float, optional', """\
Specimen density in g/cm^3 for ``absorption_correction`` (one number
inside the object). None estimates it voxel by voxel from the
composition (anion packing for oxides, ideal mixing for metals; off by
up to 25 % and more for some compounds) and warns."""),
    "detectors": ('list of (float, float), optional', """\
``[(azimuth_deg, elevation_deg), ...]`` of the EDS detectors whose
counts the series holds, for ``absorption_correction`` (equal shares).
Azimuth 0 is perpendicular to the tilt axis on the side a positive tilt
turns the specimen toward, 90 along the tilt axis (exspy's convention).
None reads them from the file: Velox's per-detector list in
``original_metadata`` (a Super-X: four at 18 deg), else
``Acquisition_instrument.TEM.Detector.EDS``."""),
    "uncertainty": ("int", """\
0 (default): none. A number of replicates (20 or more): each returned
reconstruction gets a per-voxel variance in
``metadata.Signal.Noise_properties.variance`` (HyperSpy's place for it;
its square root is the standard deviation), by a parametric bootstrap:
the reconstruction's own projections plus the maps' noise (Poisson
statistics of the spectra through the integration, or the given maps'
``Noise_properties.variance``), drawn ``uncertainty`` times and each
reconstructed like the data. It costs ``uncertainty + 1`` more
reconstructions. Tested calibrated: across independent noise
realisations of a phantom the spread matches the predicted standard
deviation within 20 % in the particle's interior. It holds the noise
only, not bias (a semi-converged blur, the missing wedge) nor systematic
errors; :meth:`quantify_cross_section` carries it into the weight
fractions. How: ``metadata.Reconstruction.Uncertainty``."""),
    "random_state": ("int, optional", """\
Seed of the bootstrap's noise (``uncertainty``); None draws one. The
seed used is recorded, and eager and lazy runs with one seed agree."""),
}


_PLACEHOLDER = re.compile(r"^(?P<indent>[ ]*)<(?P<name>\w+)>$", re.MULTILINE)


def shared_parameters(function):
    """Replace each ``<name>`` line of ``function``'s docstring by the shared text."""

    def expand(match: re.Match) -> str:
        indent, name = match["indent"], match["name"]
        kind, text = PARAMETERS[name]
        body = "\n".join(indent + "    " + line if line else ""
                         for line in text.rstrip("\n").splitlines())
        return f"{indent}{name} : {kind}\n{body}"

    if function.__doc__ is not None:  # None under python -OO
        function.__doc__ = _PLACEHOLDER.sub(expand, function.__doc__)
    return function
