"""Where the EDS detectors look from: the user's angles, or the file's.

The absorption correction needs each detector's azimuth and elevation (degrees, in the
frame of :mod:`hyperspy_hebt.tomography.attenuation`) and its share of the counts. Velox
files list every detector with its angles in radians (``original_metadata.Detectors``,
``AnalyticalDetector`` entries: a Super-X has four at 18 degrees, azimuths 45, 135, 225 and
315), while rosettasciio's ``metadata`` gives one default detector (35 degrees, azimuth 0)
for all of them; Bruker files give one azimuth and elevation in ``metadata``. What was used,
and where it came from, goes into the results' metadata.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["EdsDetectors", "checked_detectors", "detectors_of"]


@dataclass(frozen=True)
class EdsDetectors:
    """EDS detectors whose counts a series holds.

    Attributes
    ----------
    angles_deg : tuple of (float, float)
        ``(azimuth_deg, elevation_deg)`` of each detector, degrees.
    shares : tuple of float
        Each detector's share of the counts (solid angles as fractions), summing to 1.
    source : str
        Where the angles came from, in words.

    Examples
    --------
    >>> from hyperspy_hebt.detectors import EdsDetectors
    >>> super_x = EdsDetectors(((45.0, 18.0), (135.0, 18.0), (225.0, 18.0), (315.0, 18.0)),
    ...                        (0.25, 0.25, 0.25, 0.25), "given (equal shares)")
    >>> len(super_x.angles_deg), sum(super_x.shares)
    (4, 1.0)
    """

    angles_deg: tuple
    shares: tuple
    source: str

    def as_metadata(self) -> dict:
        """The detectors as a metadata node (saves and loads with a signal).

        Returns
        -------
        dict
            ``azimuth_deg``, ``elevation_deg`` and ``shares`` (lists, one entry per detector) and
            ``source``.

        Examples
        --------
        >>> from hyperspy_hebt.detectors import EdsDetectors
        >>> EdsDetectors(((45.0, 18.0),), (1.0,), "given").as_metadata()
        {'azimuth_deg': [45.0], 'elevation_deg': [18.0], 'shares': [1.0], 'source': 'given'}
        """
        return {"azimuth_deg": [a for a, _ in self.angles_deg],
                "elevation_deg": [e for _, e in self.angles_deg],
                "shares": list(self.shares), "source": self.source}


def checked_detectors(detectors) -> EdsDetectors | None:
    """The user's ``detectors`` argument checked: None, or ``[(azimuth_deg, elevation_deg), ...]``.

    Parameters
    ----------
    detectors : sequence of (azimuth_deg, elevation_deg) or None
        Detector directions in degrees, ``0 < elevation_deg < 90``; None: read them from the
    file's metadata.

    Returns
    -------
    EdsDetectors or None
        The detectors with equal shares of the counts; None when ``detectors`` is None.

    Raises
    ------
    ValueError
        Anything else, naming ``detectors`` and the value.

    Examples
    --------
    >>> from hyperspy_hebt.detectors import checked_detectors
    >>> checked_detectors([(45.0, 18.0), (135.0, 18.0)]).shares
    (0.5, 0.5)
    >>> checked_detectors([(45.0,)])
    Traceback (most recent call last):
    ...
    ValueError: detectors must be None (read them from the file's metadata) or a list of ...
    """
    if detectors is None:
        return None
    expected = ("detectors must be None (read them from the file's metadata) or a list of "
                "(azimuth_deg, elevation_deg) pairs with 0 < elevation_deg < 90")
    if isinstance(detectors, str) or not isinstance(detectors, Sequence) or not detectors:
        raise ValueError(f"{expected}, got {detectors!r}.")
    angles = []
    for pair in detectors:
        if (isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool)
                           and math.isfinite(v) for v in pair)
                or not 0 < pair[1] < 90):
            raise ValueError(f"{expected}, got {detectors!r} (at {pair!r}).")
        angles.append((float(pair[0]), float(pair[1])))
    shares = tuple(1.0 / len(angles) for _ in angles)
    return EdsDetectors(tuple(angles), shares, "given (equal shares)")


def _first_original_metadata(signal):
    """The file's own metadata: the signal's, or that of the first tilt of a stacked series."""
    original = signal.original_metadata
    first = original.get_item("stack_elements.element0.original_metadata")
    return first if first is not None else original


def _velox_detectors(original) -> tuple[list, list] | None:
    node = original.get_item("Detectors")
    if node is None:
        return None
    angles, solid_angles = [], []
    for entry in node.as_dictionary().values():
        if not isinstance(entry, dict) or entry.get("DetectorType") != "AnalyticalDetector":
            continue
        if str(entry.get("Enabled", "true")).lower() == "false":
            continue
        try:
            azimuth = math.degrees(float(entry["AzimuthAngle"]))
            elevation = math.degrees(float(entry["ElevationAngle"]))
        except (KeyError, TypeError, ValueError):
            continue
        angles.append((round(azimuth, 6) % 360.0, round(elevation, 6)))
        try:
            solid_angles.append(float(entry.get("CollectionAngle", "nan")))
        except (TypeError, ValueError):
            solid_angles.append(float("nan"))
    return (angles, solid_angles) if angles else None


def detectors_of(signal, detectors=None) -> EdsDetectors:
    """The detectors of ``signal``: ``detectors`` if given, else the file's.

    Parameters
    ----------
    signal : TomographicEDSSpectrum
        The tilt series (a series of one detector's counts, as
        ``load_tilt_series(..., detectors="separate")`` makes, needs ``detectors``).
    detectors : sequence of (azimuth_deg, elevation_deg), optional
        The user's detectors, degrees; equal shares of the counts.

    Returns
    -------
    EdsDetectors

    Raises
    ------
    ValueError
        No detector geometry in the metadata, or a one-detector series from a
        multi-detector file, with what to pass instead.

    Examples
    --------
    The simulated series carries HyperSpy's single default detector; a Velox file's own list
    (a Super-X's four) is read from ``original_metadata`` instead:

    >>> from hyperspy_hebt.detectors import detectors_of
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> series = demo_acquisition().series
    >>> detectors_of(series).angles_deg  # (azimuth_deg, elevation_deg)
    ((0.0, 35.0),)
    >>> detectors_of(series, [(45.0, 18.0), (225.0, 18.0)]).source
    'given (equal shares)'
    """
    given = checked_detectors(detectors)
    if given is not None:
        return given
    index = signal.original_metadata.get_item("tilt_series.detector_index")
    original = _first_original_metadata(signal)
    velox = _velox_detectors(original)
    if index is not None:
        raise ValueError(
            f"This series holds the counts of EDS detector {index} alone, and the readers do "
            "not say which detector that is (rosettasciio gives every Velox detector the "
            "same metadata): pass detectors=[(azimuth_deg, elevation_deg)] for it"
            + (f" (the file lists {velox[0]})." if velox else "."))
    if velox is not None:
        angles, solid_angles = velox
        values = np.asarray(solid_angles)
        if np.all(np.isfinite(values)) and np.all(values > 0):
            shares = tuple(float(v) for v in values / values.sum())
            how = "solid angles from CollectionAngle"
        else:
            shares = tuple(1.0 / len(angles) for _ in angles)
            how = "equal shares"
        tem = signal.metadata.get_item("Acquisition_instrument.TEM.Detector.EDS")
        said = "" if tem is None else (
            f"; metadata.Acquisition_instrument says azimuth {tem.get_item('azimuth_angle')}, "
            f"elevation {tem.get_item('elevation_angle')} (the reader's default), not used")
        return EdsDetectors(tuple(angles), shares,
                            f"original_metadata.Detectors (Velox), {how}{said}")
    eds = signal.metadata.get_item("Acquisition_instrument.TEM.Detector.EDS")
    azimuth = None if eds is None else eds.get_item("azimuth_angle")
    elevation = None if eds is None else eds.get_item("elevation_angle")
    try:
        pair = (float(azimuth), float(elevation))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        pair = None
    if pair is None or not (math.isfinite(pair[0]) and 0 < pair[1] < 90):
        raise ValueError(
            "The absorption correction needs the EDS detectors' directions and this "
            f"signal's metadata gives none usable (azimuth {azimuth!r}, elevation "
            f"{elevation!r} in Acquisition_instrument.TEM.Detector.EDS): pass "
            "detectors=[(azimuth_deg, elevation_deg), ...].")
    kind = None if eds is None else eds.get_item("detector_type")
    note = "" if kind is None else f" (detector_type {kind!r}: one direction for all its counts)"
    return EdsDetectors((pair,), (1.0,),
                        f"metadata.Acquisition_instrument.TEM.Detector.EDS{note}")
