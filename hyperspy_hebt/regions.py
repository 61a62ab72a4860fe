"""Regions of a quantified volume and their composition tables.

Real specimens have a protective cap, a substrate, several phases: one mean over
"the particle" mixes them. A region is a boolean volume, or a rule read against the
weight fractions themselves:

- ``"inside"``: every voxel the quantification kept (fractions summing to 1);
- ``"Pt dominates"``: inside, where Pt has the largest fraction of all elements;
- ``"Pt > 0.3"`` / ``"Pt < 0.05"``: inside, where Pt's fraction is above / below a value;
- ``"not <rule>"``: inside, where the rule does not hold (``"not Pt dominates"``:
  the specimen without its Pt cap).

:func:`composition_table` returns, per region, the voxel count and each element's
mean and standard deviation over the region's voxels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["composition_table", "region_mask"]

_RULE = re.compile(
    r"^\s*(?P<negate>not\s+)?(?:(?P<inside>inside)|(?P<element>[A-Z][a-z]?)\s*"
    r"(?:(?P<dominates>dominates)|(?P<op>[<>])\s*(?P<value>[0-9]*\.?[0-9]+)))\s*$")


def _element_of(signal) -> str:
    elements = signal.metadata.get_item("Sample.elements", [])
    if len(elements) != 1:
        raise ValueError("each fraction must carry one element in metadata.Sample.elements "
                         "(pass the list quantify_cross_section returned).")
    return str(elements[0])


def _volumes(fractions) -> tuple[list[str], list]:
    """Elements and their fraction volumes (no stacked copy: bounded memory)."""
    from hyperspy.signal import BaseSignal

    if isinstance(fractions, BaseSignal) or not fractions:
        raise TypeError("fractions must be the list of weight-fraction signals that "
                        "quantify_cross_section returned.")
    elements = [_element_of(f) for f in fractions]
    volumes = [np.asarray(f.data.compute() if f._lazy else f.data) for f in fractions]
    return elements, volumes


def _inside(volumes) -> np.ndarray:
    total = np.zeros(volumes[0].shape, dtype=np.float32)
    for volume in volumes:
        total += volume
    return total > 0


def _parse_rule(rule: str, elements: Sequence[str]):
    """Parse a region rule, checked against the quantified ``elements``.

    So a run can refuse a bad rule before it starts.

    Raises
    ------
    ValueError
        A rule that does not parse, or one naming an element not quantified.
    """
    match = _RULE.match(rule) if isinstance(rule, str) else None
    if match is None:
        raise ValueError(
            f"region rule {rule!r} is not understood; use 'inside', 'Pt dominates', "
            "'Pt > 0.3', 'Pt < 0.05', or any of them after 'not'.")
    if not match["inside"] and match["element"] not in elements:
        raise ValueError(f"region rule {rule!r} names {match['element']}, which was not "
                         f"quantified (elements: {list(elements)}).")
    return match


def region_mask(rule, elements: Sequence[str], stack) -> np.ndarray:
    """Boolean volume of one region.

    Parameters
    ----------
    rule : str, numpy.ndarray or HyperSpy signal
        A rule (see the module's description) or a boolean volume shaped like
        one fraction map.
    elements : sequence of str
        Element of each map of ``stack``.
    stack : numpy.ndarray or sequence of numpy.ndarray
        ``(elements, y, z, x)`` fractions (0 outside the object), stacked or one
        volume per element.

    Returns
    -------
    numpy.ndarray of bool
        The region, shaped like one fraction map; never outside the object.

    Raises
    ------
    ValueError
        A rule that does not parse, an element not quantified, or a mask of
        another shape.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> from hyperspy_hebt.regions import region_mask
    >>> fractions = series.quantify_cross_section(
    ...     series.reconstruct_sirt(iterations=20, show_progressbar=False))
    >>> mask = region_mask("Au dominates", ["Ag", "Au"], [f.data for f in fractions])
    >>> mask.shape, mask.dtype
    ((2, 24, 24), dtype('bool'))
    """
    inside = _inside(stack)
    if not isinstance(rule, str):
        mask = np.asarray(getattr(rule, "data", rule))
        if mask.shape != inside.shape or mask.dtype != bool:
            raise ValueError(f"a region given as a volume must be boolean with shape "
                             f"{inside.shape} (y, z, x), got {mask.dtype} {mask.shape}.")
        return mask & inside
    match = _parse_rule(rule, elements)
    if match["inside"]:
        selected = inside
    else:
        element = match["element"]
        values = stack[list(elements).index(element)]
        if match["dominates"]:
            dominant = np.ones(inside.shape, dtype=bool)
            for other in stack:
                dominant &= values >= other
            selected = inside & dominant
        elif match["op"] == ">":
            selected = inside & (values > float(match["value"]))
        else:
            selected = inside & (values < float(match["value"]))
    return inside & ~selected if match["negate"] else selected


def composition_table(fractions: Sequence,
                      regions: Mapping[str, object] | Sequence[str] | None = None) -> dict:
    """Composition of each region: voxel count, and mean and spread per element.

    Parameters
    ----------
    fractions : list of Signal2D
        Weight (or atomic) fraction volumes from ``quantify_cross_section``, one
        per element, on one grid (lazy ones are computed).
    regions : dict or sequence, optional
        ``{name: rule or boolean volume}``, or rules that name themselves; default
        ``["inside"]``.

    Returns
    -------
    dict
        ``{region: {"voxels": n, "rule": ..., "mean": {el: m}, "std": {el: s}}}``;
        an empty region has ``None`` means, and says so in ``"note"``. ``"std"`` is the
        spread of the voxels' values over the region. When the fractions carry a
        variance (``uncertainty=``), also ``"voxel_uncertainty": {el: u}``: the RMS of
        the voxels' own standard deviations over the region (how sure one voxel is; the
        mean's uncertainty is smaller, by how much depends on the noise's correlation
        between voxels, which is not computed), over the voxels where it is defined,
        and ``"voxel_uncertainty_undefined_share"``: the share where it is not (NaN:
        too noisy for a first-order propagation).

    Raises
    ------
    TypeError
        ``fractions`` is not a list of weight-fraction signals, or ``regions`` is a single
        string (a rule goes in a list).
    ValueError
        A fraction without its element, a rule that cannot be read or that names an
        element not among the fractions, or a mask that is not boolean of their shape.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> from hyperspy_hebt.regions import composition_table
    >>> fractions = series.quantify_cross_section(
    ...     series.reconstruct_sirt(iterations=20, show_progressbar=False))
    >>> table = composition_table(fractions, ["inside", "Au dominates"])
    >>> table["Au dominates"]["voxels"] < table["inside"]["voxels"]
    True
    >>> round(table["Au dominates"]["mean"]["Au"], 1)
    0.8
    """
    elements, volumes = _volumes(fractions)
    variances = _variances(fractions)
    if regions is None:
        regions = ["inside"]
    if isinstance(regions, str):
        raise TypeError("regions must be a list of rules or a dict {name: rule or mask}, "
                        f"got the string {regions!r}.")
    named = dict(regions) if isinstance(regions, Mapping) else {r: r for r in regions}
    table = {}
    for name, rule in named.items():
        mask = region_mask(rule, elements, volumes)
        count = int(mask.sum())
        entry = {"voxels": count, "rule": rule if isinstance(rule, str) else "boolean volume"}
        if count == 0:
            entry.update(mean={e: None for e in elements}, std={e: None for e in elements},
                         note="no voxel in this region")
        else:
            mean, std = {}, {}
            for element, volume in zip(elements, volumes):  # one element's voxels at a time
                values = volume[mask]
                mean[element] = float(values.mean(dtype=np.float64))
                std[element] = float(values.std(dtype=np.float64))
            entry.update(mean=mean, std=std)
            if variances is not None:
                defined = np.isfinite(variances[0][mask])
                entry["voxel_uncertainty"] = {
                    element: (float(np.sqrt(variance[mask][defined].mean(dtype=np.float64)))
                              if defined.any() else None)
                    for element, variance in zip(elements, variances)}
                entry["voxel_uncertainty_undefined_share"] = float(1 - defined.mean())
        table[str(name)] = entry
    return table


def _variances(fractions) -> list | None:
    """Each fraction's variance data (computed), or None unless every fraction has one."""
    from hyperspy.signal import BaseSignal

    found = [f.metadata.get_item("Signal.Noise_properties.variance") for f in fractions]
    if not all(isinstance(v, BaseSignal) for v in found):
        return None
    return [np.asarray(v.data.compute() if v._lazy else v.data) for v in found]


def composition_figure(table: dict, units: str = "weight fraction"):
    """Draw a bar chart of each region's mean composition with its spread.

    One colour per element, as in :func:`~hyperspy_hebt.figures.element_colors`.

    Parameters
    ----------
    table : dict
        :func:`composition_table`'s result.
    units : str
        The y-axis label.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> from hyperspy_hebt.regions import composition_figure, composition_table
    >>> fractions = series.quantify_cross_section(
    ...     series.reconstruct_sirt(iterations=20, show_progressbar=False))
    >>> figure = composition_figure(composition_table(fractions, ["inside", "Au dominates"]))
    """
    import matplotlib.pyplot as plt

    from .figures import element_colors

    names = list(table)
    elements = list(next(iter(table.values()))["mean"])
    colors = element_colors(len(elements))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(names) * max(1, len(elements)) / 3), 4))
    width = 0.8 / max(1, len(elements))
    for i, element in enumerate(elements):
        means = [table[n]["mean"][element] or 0.0 for n in names]
        spreads = [table[n]["std"][element] or 0.0 for n in names]
        positions = np.arange(len(names)) + (i - (len(elements) - 1) / 2) * width
        ax.bar(positions, means, width, yerr=spreads, color=colors[i], label=element,
               capsize=2)
    ax.set_xticks(np.arange(len(names)),
                  [f"{n}\n({table[n]['voxels']} voxels)" for n in names], fontsize=8)
    ax.set(ylabel=f"{units} (mean +- std over voxels)", ylim=(0, 1.05))
    ax.legend(fontsize=8, ncol=min(len(elements), 6))
    fig.tight_layout()
    return fig
