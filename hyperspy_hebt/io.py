"""Assemble a tilt series from per-tilt microscope files.

One file per tilt, as microscopes write them: Bruker ``.bcf`` (the HAADF image and
the EDS spectrum image in one file), Thermo Fisher Velox ``.emd`` (images and the
spectrum image) or ``.hspy``/``.zspy`` (a spectrum image; its ADF image in a
parallel set of files). rosettasciio reads them; this module picks the EDS
spectrum image and the ADF image of each file, finds the tilt angles, and stacks
them with :func:`~hyperspy_hebt.stack_tilt_series`.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .checksums import CHECKSUM_SUFFIX, verify_checksum
from .tilt_series import TILT_AXIS_NAME, apply_tilt_angles, stack_tilt_series, standardise_scan_axes

__all__ = ["load_tilt_series", "tilt_angle_from_filename"]

#: Titles of ADF-type images (case-insensitive words); the first match is used.
ADF_TITLES = ("HAADF", "ADF", "DF", "DF4", "DF-S")

_TILT_WORD = re.compile(r"tilt[\s_=]*([+-]?|[mp])(\d+(?:[.p]\d+)?)(?![0-9])", re.IGNORECASE)
_SIGNED_STEM = re.compile(r"^([+-]?)(\d+(?:\.\d+)?)(?:\s*deg|°)?$", re.IGNORECASE)


def tilt_angle_from_filename(path: str) -> float:
    """Parse a tilt angle (degrees) from a file name.

    Understood: one number after the word ``tilt`` (``tilt_+10.emd``,
    ``series2_tilt-35.5.bcf``, ``tilt_m20.hspy`` and ``tilt_p7p5`` with ``m``/``p``
    for minus/plus and ``p`` for the decimal point), or a name that is a signed
    number (``-35.bcf``, ``+12.5deg.emd``). Anything else is ambiguous
    (``map-2.bcf``: minus two, or map number two?) and refused.

    Parameters
    ----------
    path : str
        A file name or path; only the name is read.

    Returns
    -------
    float
        The tilt angle in degrees.

    Raises
    ------
    ValueError
        When the name matches neither form.

    Examples
    --------
    >>> from hyperspy_hebt.io import tilt_angle_from_filename
    >>> tilt_angle_from_filename("data/tilt_-40.bcf"), tilt_angle_from_filename("tilt_m35.bcf")
    (-40.0, -35.0)
    """
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    matches = list(_TILT_WORD.finditer(stem)) or list(_SIGNED_STEM.finditer(stem))
    if len(matches) != 1:
        raise ValueError(
            f"Cannot read a tilt angle from the file name {os.path.basename(path)!r}: it "
            "needs one number after the word 'tilt' ('tilt_-35.bcf', 'tilt_m35.bcf') or a "
            "name that is a signed number ('-35.bcf'); or pass tilt_angles or "
            "tilt_from=callable."
        )
    sign, digits = matches[0].group(1).lower(), matches[0].group(2).replace("p", ".")
    value = float(digits)
    return -value if sign in ("-", "m") else value


def _expand(paths, name):
    if isinstance(paths, (str, os.PathLike)):
        pattern = os.fspath(paths)
        # A pattern such as "data/tilt_*" also matches the checksum files beside the data.
        found = sorted(p for p in glob.glob(pattern) if not p.endswith(CHECKSUM_SUFFIX))
        if not found:
            raise FileNotFoundError(f"{name}: no file matches {pattern!r}"
                                    + (" (checksum files left out)." if glob.glob(pattern)
                                       else "."))
        return found
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError(f"{name} is empty: give a glob pattern or a list of files.")
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"{name}: these files do not exist: {missing}.")
    return paths


#: What ``detectors`` may be: Super-X style detectors summed, or one series each.
DETECTOR_MODES = ("sum", "separate")
#: Formats whose reader takes ``sum_EDS_detectors`` (Velox EMD).
_DETECTOR_AWARE = (".emd",)


def _is_spectrum_image(signal) -> bool:
    # Velox files also hold each detector's sum spectrum (no navigation): not a map.
    if signal.axes_manager.signal_dimension != 1 or signal.axes_manager.navigation_dimension == 0:
        return False
    signal_type = signal.metadata.get_item("Signal.signal_type", "") or ""
    units = signal.axes_manager.signal_axes[0].units
    return signal_type.startswith("EDS") or units in ("keV", "eV")


def _is_adf(signal) -> bool:
    if signal.axes_manager.signal_dimension != 2 or signal.axes_manager.navigation_dimension:
        return False
    title = (signal.metadata.get_item("General.title", "") or "").upper()
    return any(re.search(rf"(^|[^A-Z]){t}([^A-Z]|$)", title) for t in ADF_TITLES)


def _split_file(path, signals, want_adf, n_spectra=1):
    """Return the file's spectrum images and its ADF image (or None).

    ``n_spectra`` spectrum images: one, or one per detector.
    """
    signals = signals if isinstance(signals, list) else [signals]
    spectra = [s for s in signals if _is_spectrum_image(s)]
    if len(spectra) != n_spectra or not spectra:
        found = [(s.metadata.General.title, str(s.axes_manager.shape)) for s in signals]
        expected = "exactly one" if n_spectra == 1 else f"one per detector ({n_spectra})"
        hint = ""
        if not spectra and path.lower().endswith(".emd"):
            hint = (" A Velox file saved as reduced or pruned data keeps no spectrum "
                    "stream: export the full .emd, or load the Bruker .bcf.")
        raise ValueError(
            f"{os.path.basename(path)} holds {len(spectra)} EDS spectrum images; expected "
            f"{expected}. Signals in the file (title, shape): {found}.{hint}"
        )
    adf = None
    if want_adf:
        images = [s for s in signals if _is_adf(s)]
        adf = images[0] if images else None
    return spectra, adf


def _metadata_tilt(path, spectrum):
    for key in ("Acquisition_instrument.TEM.Stage.tilt_alpha",
                "Acquisition_instrument.SEM.Stage.tilt_alpha"):
        value = spectrum.metadata.get_item(key)
        if value is not None:
            return float(value)
    raise ValueError(
        f"{os.path.basename(path)} has no Stage.tilt_alpha in its metadata; use "
        "tilt_from='filename', a callable, or pass tilt_angles."
    )


def _read(path: str, lazy: bool, **kwargs):
    """``hs.load`` of one file.

    A file the readers cannot parse (truncated by a copy that stopped early, a damaged HDF5 or zarr
    header) is named in the error, where h5py, blosc or json would not say which of the series'
    files it was.
    """
    import hyperspy.api as hs

    try:
        loaded = hs.load(path, lazy=lazy, **kwargs)
    except Exception as error:  # the readers raise many types; all mean "unreadable"
        raise ValueError(
            f"{path} cannot be read ({type(error).__name__}: {error}). Is the file "
            "complete (a copy or transfer that stopped early) and in a format rosettasciio "
            "reads?") from error
    if os.path.isdir(path) and path.lower().rstrip("/").endswith(".zspy"):
        _refuse_missing_chunks(path)
        if lazy:
            for signal in loaded if isinstance(loaded, list) else [loaded]:
                _name_chunk_errors(signal, path)
    return loaded


class _NamedChunks:
    """A zarr array whose read errors name the file (dask reads it block by block, later)."""

    def __init__(self, array, path: str, where: str):
        self.array, self.path, self.where = array, path, where
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key):
        try:
            return self.array[key]
        except Exception as error:  # blosc, zlib, numpy: all mean a damaged chunk
            raise ValueError(
                f"{self.path}: a chunk of {self.where} cannot be read "
                f"({type(error).__name__}: {error}). Copy the file again.") from error


def _name_chunk_errors(signal, path: str) -> None:
    """Let a lazy signal's damaged ``.zspy`` chunks fail naming the file, when computed.

    A chunk that is present but damaged (a copy that stopped mid-file) fails only when
    dask reads it, inside blosc, far from the file's name. The signal's data are re-read
    through :class:`_NamedChunks` (same zarr array, same chunks, nothing read now); an
    array that cannot be matched to the signal is left as it is.
    """
    import dask.array as da
    from dask.base import tokenize

    data = getattr(signal, "data", None)
    if not getattr(signal, "_lazy", False) or not isinstance(data, da.Array):
        return
    matches = []
    for header in sorted(Path(path).glob("**/data/.zarray")):
        array = _open_data_array(header)
        if array.shape == data.shape and array.dtype == data.dtype:
            matches.append((array, header.parent.relative_to(path).as_posix()))
    if len(matches) == 1:
        array, where = matches[0]
        signal.data = da.from_array(_NamedChunks(array, path, where), chunks=data.chunks,
                                    asarray=False,
                                    name=f"zspy-{tokenize(path, where, data.chunks)}")


def _open_data_array(header: Path):
    """The zarr array whose ``.zarray`` header is ``header``, read-only."""
    import json

    import zarr

    meta = json.loads(header.read_text())
    store = (zarr.storage.NestedDirectoryStore if meta.get("dimension_separator") == "/"
             else zarr.storage.DirectoryStore)(str(header.parent))
    return zarr.open_array(store, mode="r")


def _refuse_missing_chunks(path: str) -> None:
    """Refuse a ``.zspy`` folder whose data arrays lack chunk files.

    Zarr reads a missing chunk back as its fill value (zeros), so a damaged copy would load as a
    series with blank blocks. rosettasciio writes every chunk, empty ones included.
    """
    for header in sorted(Path(path).glob("**/data/.zarray")):
        array = _open_data_array(header)
        if array.nchunks_initialized < array.nchunks:
            raise ValueError(
                f"{path}: {array.nchunks - array.nchunks_initialized} of {array.nchunks} "
                f"chunks of {header.parent.relative_to(path).as_posix()} are missing; zarr "
                "would read them back as zeros (blank blocks of the series). Copy the file "
                "again; if its writer left out all-zero chunks on purpose, load it with "
                "hs.load and use stack_tilt_series.")


def load_tilt_series(
    paths: str | Sequence[str],
    tilt_angles: Sequence[float] | None = None,
    tilt_from: str | Callable = "metadata",
    adf_paths: str | Sequence[str] | None = None,
    lazy: bool = True,
    elements: Sequence[str] | None = None,
    xray_lines: Sequence[str] | None = None,
    detectors: str = "sum",
    verify_checksums: bool = True,
    **load_kwargs,
):
    """Load one file per tilt into a tilt series and its ADF series.

    Parameters
    ----------
    paths : str or sequence of str
        A glob pattern (``"data/*.bcf"``, sorted by name) or a list of files:
        ``.bcf``, ``.emd``, ``.hspy``, ``.zspy`` or anything rosettasciio reads
        that holds one EDS spectrum image per file.
    tilt_angles : sequence of float, optional
        One angle (degrees) per file, in the order of ``paths``; overrides
        ``tilt_from``.
    tilt_from : "metadata", "filename" or callable
        Where the angles come from: ``Stage.tilt_alpha`` of each file, the file
        name (see :func:`tilt_angle_from_filename`), or ``f(path, spectrum) ->
        degrees``.
    adf_paths : str or sequence of str, optional
        Files holding the ADF image of each tilt, in the same order, for
        formats that store it separately (``.hspy``). Without it the ADF image
        is taken from each file when present (Bruker, Velox: a 2D image whose
        title is HAADF, ADF or DF).
    lazy : bool
        Load lazily (default): nothing is read whole until computed.
    elements, xray_lines : sequence of str, optional
        The elements (exspy picks their lines) or X-ray lines to work on. They
        **replace** the list the files' metadata carry (acquisition software
        lists whatever its own identification found); the files' list is kept
        under ``original_metadata.tilt_series.file_elements`` and
        ``file_xray_lines``. Without them the files' list stays.
    detectors : {"sum", "separate"}
        Files with several EDS detectors (Velox Super-X): their spectra summed
        into one series (default), or one series per detector (a list, in the
        files' detector order, of one for single-detector files such as
        Bruker's; the ADF is shared). rosettasciio gives no per-detector
        geometry (every Super-X detector reads azimuth 0): the counts are kept
        apart, their directions are not known.
    verify_checksums : bool
        Check every file that has a SHA-256 checksum file beside it (``tilt_+10.bcf.sha256``,
        GNU ``sha256sum``'s format: :mod:`hyperspy_hebt.checksums`) before reading it, and
        refuse one that differs (default). Reads each such file once more; a file without a
        checksum file cannot be checked. What was checked is recorded under
        ``original_metadata.tilt_series.checksums``.
    **load_kwargs
        Passed to ``hs.load`` (e.g. ``select_type``, ``sum_frames``).

    Returns
    -------
    (TomographicEDSSpectrum, Signal2D or None)
        The series sorted by tilt angle (a list of series with
        ``detectors="separate"``), and the ADF stack (navigation ``tilt``) in the
        same order, or None when the files hold no ADF image. Scan axes come
        out as ``x`` and ``y`` whatever the reader called them (Bruker:
        ``width``/``height``), recorded under ``original_metadata.tilt_series.renamed_axes``.

    Raises
    ------
    ValueError
        Missing, duplicated or out-of-range angles, a count that differs from
        the number of files, files without exactly one spectrum image (or one
        per detector), an unknown ``detectors`` value, unknown elements or lines, ADF
        images in some files only, or images that do not match in shape.
    hyperspy_hebt.checksums.ChecksumMismatch
        A file differs from its checksum file (a ``ValueError`` naming both).
    FileNotFoundError
        A pattern matching nothing, or missing files.

    Examples
    --------
    Files written one per tilt (here by the simulator), angles read from their names:

    >>> import tempfile
    >>> from hyperspy_hebt import load_tilt_series
    >>> from hyperspy_hebt.simulation import demo_acquisition, write_acquisition_files
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> folder = tempfile.mkdtemp()
    >>> paths, adf_paths = write_acquisition_files(acquisition, folder)
    >>> series, adf = load_tilt_series(folder + "/tilt_*.hspy", tilt_from="filename",
    ...                                adf_paths=folder + "/adf_tilt_*.hspy")
    >>> series
    <LazyTomographicEDSSpectrum, title: ..., dimensions: (24, 2, 31|256)>
    >>> series.tilt_angles[:3]
    array([-75., -70., -65.])
    """
    if detectors not in DETECTOR_MODES:
        raise ValueError(f"detectors must be one of {DETECTOR_MODES}, got {detectors!r}.")
    if not isinstance(verify_checksums, bool):
        raise TypeError(f"verify_checksums must be True or False, got {verify_checksums!r}.")
    files = _expand(paths, "paths")
    adf_files = None if adf_paths is None else _expand(adf_paths, "adf_paths")
    if adf_files is not None and len(adf_files) != len(files):
        raise ValueError(
            f"adf_paths has {len(adf_files)} files for {len(files)} spectrum-image files."
        )
    spectra, adfs = [], []
    n_detectors = None
    checked: dict[str, list] = {"verified": [], "no_checksum_file": []}

    def read(path, **kwargs):
        if verify_checksums:
            checked["verified" if verify_checksum(path) else "no_checksum_file"].append(
                os.path.basename(path))
        return _read(path, lazy, **kwargs)

    for i, path in enumerate(files):
        kwargs = dict(load_kwargs)
        if path.lower().endswith(_DETECTOR_AWARE):
            kwargs.setdefault("sum_EDS_detectors", detectors == "sum")
        loaded = read(path, **kwargs)
        if n_detectors is None:
            listed = loaded if isinstance(loaded, list) else [loaded]
            n_detectors = max(1, sum(_is_spectrum_image(s) for s in listed))
            if detectors == "sum":
                n_detectors = 1
        file_spectra, adf = _split_file(path, loaded, want_adf=adf_files is None,
                                        n_spectra=n_detectors)
        if adf_files is not None:
            adf = read(adf_files[i])
            if isinstance(adf, list) or adf.axes_manager.signal_dimension != 2:
                raise ValueError(f"{adf_files[i]} must hold one 2D ADF image.")
        spectra.append(file_spectra)
        adfs.append(adf)
    if tilt_angles is not None:
        angles = np.asarray(tilt_angles, dtype=float)
        if angles.ndim != 1 or angles.size != len(files):
            raise ValueError(
                f"tilt_angles has {angles.size} values for {len(files)} files; give one "
                "angle per file, in the order of paths."
            )
    elif callable(tilt_from):
        angles = np.array([float(tilt_from(p, s[0])) for p, s in zip(files, spectra)])
    elif tilt_from == "metadata":
        angles = np.array([_metadata_tilt(p, s[0]) for p, s in zip(files, spectra)])
        values, counts = np.unique(angles, return_counts=True)
        if len(files) > 1 and counts.max() > 1:
            raise ValueError(
                f"Stage.tilt_alpha repeats in the files' metadata ({values[counts > 1].tolist()}"
                " degrees): it does not record the tilt of each file (exspy also fills in 0 "
                "when it is missing). Use tilt_from='filename', a callable, or tilt_angles."
            )
    elif tilt_from == "filename":
        angles = np.array([tilt_angle_from_filename(p) for p in files])
    else:
        raise ValueError(
            f"tilt_from must be 'metadata', 'filename' or a callable, got {tilt_from!r}."
        )
    with_adf = [a is not None for a in adfs]
    if any(with_adf) and not all(with_adf):
        missing = [os.path.basename(f) for f, ok in zip(files, with_adf) if not ok]
        raise ValueError(f"These files hold no ADF image while the others do: {missing}.")
    series = []
    assert n_detectors is not None  # set by the first file (paths is never empty)
    for detector in range(n_detectors):
        one = stack_tilt_series([s[detector] for s in spectra], angles, lazy=lazy)
        one.original_metadata.set_item(
            "tilt_series.files",
            [files[i] for i in one.original_metadata.tilt_series.acquisition_order])
        one.original_metadata.set_item(
            "tilt_series.checksums",
            checked if verify_checksums else "not checked (verify_checksums=False)")
        if n_detectors > 1:
            one.original_metadata.set_item("tilt_series.detector_index", detector)
            one.metadata.General.title += f" (EDS detector {detector})"
        _replace_line_list(one, elements, xray_lines)
        series.append(one)
    series = series[0] if detectors == "sum" else series
    if not all(with_adf):
        return series, None
    return series, _stack_adf(adfs, angles, lazy)


def _replace_line_list(series, elements, xray_lines) -> None:
    """The user's elements/lines replace the file's list (kept in original_metadata)."""
    if elements is None and xray_lines is None:
        return
    for name, value in (("elements", elements), ("xray_lines", xray_lines)):
        if value is not None and (isinstance(value, str) or not hasattr(value, "__iter__")):
            raise TypeError(f"{name} must be a list of names, e.g. ['Fe', 'O'] or "
                            f"['Fe_Ka'], got {value!r}.")
    file_elements = list(series.metadata.get_item("Sample.elements", []))
    file_lines = list(series.metadata.get_item("Sample.xray_lines", []))
    series.original_metadata.set_item("tilt_series.file_elements", file_elements)
    series.original_metadata.set_item("tilt_series.file_xray_lines", file_lines)
    if series.metadata.has_item("Sample.elements"):
        del series.metadata.Sample.elements
    if series.metadata.has_item("Sample.xray_lines"):
        del series.metadata.Sample.xray_lines
    try:
        if elements is not None:
            series.add_elements(list(elements))
        if xray_lines is not None:
            series.add_lines(list(xray_lines))
        else:
            series.add_lines()
    except (ValueError, KeyError) as error:
        name = "xray_lines" if xray_lines is not None else "elements"
        raise ValueError(
            f"{name}: {error!s} (elements {elements}, xray_lines {xray_lines}); use element "
            "symbols such as 'Fe' and exspy line names such as 'Fe_Ka'."
        ) from None


def _stack_adf(adfs, angles, lazy):
    import hyperspy.api as hs

    shapes = {a.data.shape for a in adfs}
    if len(shapes) != 1:
        raise ValueError(f"The ADF images differ in shape: {sorted(shapes)}.")
    order = np.argsort(angles, kind="stable")
    stacked = hs.stack([adfs[i] for i in order], new_axis_name=TILT_AXIS_NAME, lazy=lazy)
    apply_tilt_angles(stacked, angles[order])
    renamed = standardise_scan_axes(stacked)
    if renamed:
        stacked.original_metadata.set_item("tilt_series.renamed_axes", renamed)
    stacked.metadata.General.title = f"ADF tilt series ({adfs[0].metadata.General.title})"
    return stacked
