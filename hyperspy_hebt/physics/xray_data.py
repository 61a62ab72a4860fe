"""Atomic data per element and X-ray line: subshell, fluorescence yield, line fraction.

Line names are exspy's (``"Ag_La"``, ``"Co_Ka"``, ``"Au_Ma"`` ...). Fluorescence
yields and line fractions come from EADL (Perkins et al. 1991) through pyxray
(``reference="perkins1991"``), as in the paper's MC X-ray calculations:

- the fluorescence yield of a subshell is the sum of the radiative transition
  probabilities that fill it;
- a line's fraction ``p`` (the paper's "relative intensity") is its share of
  those radiative transitions. exspy's lines group the transitions an EDS
  detector cannot separate (Ka = Ka1 + Ka2, La = La1 + La2, Ma = Ma1 + Ma2,
  Lb2 = Lb2 + Lb15, Kb = every K transition from the M and N shells).

Coster-Kronig and cascade vacancy transfers are ignored, as in the paper's
thin-film model. Atomic weights and numbers come from exspy's element database.
"""

from __future__ import annotations

import functools

__all__ = [
    "LINE_TRANSITIONS",
    "atomic_number",
    "atomic_weight",
    "fluorescence_yield",
    "ionized_subshell",
    "line_fraction",
    "mass_density",
    "split_xray_line",
]

_SUBSHELL_QUANTUM_NUMBERS = {
    "K": (1, 0, 0.5),
    "L1": (2, 0, 0.5), "L2": (2, 1, 0.5), "L3": (2, 1, 1.5),
    "M1": (3, 0, 0.5), "M2": (3, 1, 0.5), "M3": (3, 1, 1.5), "M4": (3, 2, 1.5), "M5": (3, 2, 2.5),
    "N1": (4, 0, 0.5), "N2": (4, 1, 0.5), "N3": (4, 1, 1.5), "N4": (4, 2, 1.5), "N5": (4, 2, 2.5),
    "N6": (4, 3, 2.5), "N7": (4, 3, 3.5),
    "O1": (5, 0, 0.5), "O2": (5, 1, 0.5), "O3": (5, 1, 1.5), "O4": (5, 2, 1.5), "O5": (5, 2, 2.5),
}

#: exspy line -> (ionised subshell, source subshells of the transitions it groups).
#: ``None`` as sources means "every source outside the L shell" (the K-beta group).
LINE_TRANSITIONS = {
    "Ka": ("K", ("L2", "L3")),
    "Kb": ("K", None),
    "La": ("L3", ("M4", "M5")),
    "Lb1": ("L2", ("M4",)),
    "Lb2": ("L3", ("N4", "N5")),
    "Lb3": ("L1", ("M3",)),
    "Lb4": ("L1", ("M2",)),
    "Lg1": ("L2", ("N4",)),
    "Lg3": ("L1", ("N3",)),
    "Ll": ("L3", ("M1",)),
    "Ln": ("L2", ("M1",)),
    "Ma": ("M5", ("N6", "N7")),
    "Mb": ("M4", ("N6",)),
    "Mg": ("M3", ("N5",)),
    "M2N4": ("M2", ("N4",)),
    "M3O4": ("M3", ("O4",)),
    "M3O5": ("M3", ("O5",)),
}


def split_xray_line(xray_line: str) -> tuple[str, str]:
    """``"Ag_La"`` -> ``("Ag", "La")``, checked against exspy's database.

    Parameters
    ----------
    xray_line : str
        ``element_line``, as exspy names lines.

    Returns
    -------
    element, line : str

    Raises
    ------
    ValueError
        Not of the form ``Element_Line``, unknown element, or a line exspy does
        not list for that element.

    Examples
    --------
    >>> from hyperspy_hebt.physics import split_xray_line
    >>> split_xray_line("Au_Ma")
    ('Au', 'Ma')
    """
    from exspy.material import elements

    if not isinstance(xray_line, str) or xray_line.count("_") != 1:
        raise ValueError(
            f"xray_line must look like 'Ag_La' (element, underscore, line), got {xray_line!r}."
        )
    element, line = xray_line.split("_")
    if element not in elements:
        raise ValueError(f"Unknown element {element!r} in xray_line {xray_line!r}.")
    lines = elements[element].Atomic_properties.get_item("Xray_lines")
    if lines is None or line not in lines.keys():
        known = [] if lines is None else list(lines.keys())
        raise ValueError(
            f"{element} has no line {line!r} in exspy's database; its lines are {known}."
        )
    return element, line


def _element_properties(element: str):
    from exspy.material import elements

    if not isinstance(element, str) or element not in elements:
        raise ValueError(f"Unknown element {element!r}: give a chemical symbol such as 'Ag'.")
    return elements[element].General_properties


def atomic_weight(element: str) -> float:
    """Standard atomic weight in g/mol (exspy's element database).

    Parameters
    ----------
    element : str
        Chemical symbol.

    Returns
    -------
    float
        g/mol.

    Examples
    --------
    >>> from hyperspy_hebt.physics import atomic_weight
    >>> round(atomic_weight("Fe"), 3)  # g/mol
    55.845
    """
    return float(_element_properties(element).atomic_weight)


def mass_density(element: str) -> float:
    """Mass density of the pure element in g/cm^3 (exspy's element database).

    Parameters
    ----------
    element : str
        Chemical symbol.

    Returns
    -------
    float
        g/cm^3.

    Raises
    ------
    ValueError
        An unknown symbol, or no density in the database.

    Examples
    --------
    >>> from hyperspy_hebt.physics import mass_density
    >>> mass_density("Fe")  # g/cm^3
    7.874
    """
    from exspy.material import elements

    _element_properties(element)
    density = elements[element].get_item("Physical_properties.density_gcm3")
    if density is None:
        raise ValueError(f"exspy's database has no density for {element}.")
    return float(density)


def atomic_number(element: str) -> int:
    """Atomic number Z.

    Parameters
    ----------
    element : str
        Chemical symbol.

    Returns
    -------
    int

    Examples
    --------
    >>> from hyperspy_hebt.physics import atomic_number
    >>> atomic_number("Fe")
    26
    """
    return int(_element_properties(element).Z)


def ionized_subshell(xray_line: str) -> str:
    """The subshell whose vacancy the line fills (``"Ag_La"`` -> ``"L3"``).

    Parameters
    ----------
    xray_line : str
        Such as ``"Ag_La"``.

    Returns
    -------
    str
        ``"K"``, ``"L1"`` ... ``"M5"``.

    Raises
    ------
    ValueError
        For lines fed by more than one subshell (exspy's ``Mz``: M4 and M5),
        whose cross section is not a single-subshell quantity.

    Examples
    --------
    >>> from hyperspy_hebt.physics import ionized_subshell
    >>> ionized_subshell("Fe_Ka"), ionized_subshell("Au_Ma")
    ('K', 'M5')
    """
    _, line = split_xray_line(xray_line)
    if line not in LINE_TRANSITIONS:
        raise ValueError(
            f"{xray_line} is fed by more than one subshell (Mz: M5-N3 and M4-N2), so it has "
            "no single ionisation cross section, fluorescence yield or line fraction; "
            f"quantify with one of {sorted(LINE_TRANSITIONS)} instead."
        )
    return LINE_TRANSITIONS[line][0]


@functools.cache
def _radiative_transitions(z: int, subshell: str) -> tuple:
    """(source subshell name, probability) of EADL radiative transitions into ``subshell``."""
    import pyxray

    destination = _SUBSHELL_QUANTUM_NUMBERS[subshell]
    names = {v: k for k, v in _SUBSHELL_QUANTUM_NUMBERS.items()}
    try:
        transitions = pyxray.element_xray_transitions(z, reference="perkins1991")
    except pyxray.NotFound:
        return ()
    out = []
    for transition in transitions:
        d, s = transition.destination_subshell, transition.source_subshell
        if (d.n, d.l, d.j) != destination:
            continue
        try:
            probability = pyxray.xray_transition_probability(z, transition,
                                                             reference="perkins1991")
        except pyxray.NotFound:
            raise ValueError(
                f"EADL (perkins1991) has the transition {transition} of Z={z} but no "
                "probability for it; the fluorescence yield would be incomplete."
            ) from None
        out.append((names.get((s.n, s.l, s.j), f"n{s.n}l{s.l}j{s.j}"), float(probability)))
    return tuple(out)


def _transitions_or_error(xray_line: str):
    element, line = split_xray_line(xray_line)
    subshell = ionized_subshell(xray_line)
    transitions = _radiative_transitions(atomic_number(element), subshell)
    if not transitions:
        raise ValueError(
            f"EADL (perkins1991, through pyxray) lists no radiative transition into the "
            f"{subshell} subshell of {element}, so {xray_line} has no fluorescence yield or "
            "line fraction here; pass your own factors to quantify it."
        )
    return line, transitions


def fluorescence_yield(xray_line: str) -> float:
    """Fluorescence yield omega of the subshell the line fills (EADL).

    Parameters
    ----------
    xray_line : str
        exspy line name, e.g. ``"Ag_La"`` (yield of Ag L3).

    Returns
    -------
    float
        Sum of the radiative transition probabilities into that subshell
        (dimensionless, per vacancy).

    Examples
    --------
    >>> from hyperspy_hebt.physics import fluorescence_yield
    >>> round(fluorescence_yield("Fe_Ka"), 3)
    0.336
    """
    _, transitions = _transitions_or_error(xray_line)
    return float(sum(p for _, p in transitions))


def line_fraction(xray_line: str) -> float:
    """Share p of the subshell's radiative transitions that the line carries (EADL).

    Parameters
    ----------
    xray_line : str
        exspy line name, e.g. ``"Au_Ma"`` (Ma1 + Ma2 over all M5 radiative lines).

    Returns
    -------
    float
        Dimensionless fraction in [0, 1] (the paper's "relative intensity").

    Examples
    --------
    >>> from hyperspy_hebt.physics import line_fraction
    >>> round(line_fraction("Fe_Ka"), 3)
    0.892
    """
    line, transitions = _transitions_or_error(xray_line)
    sources = LINE_TRANSITIONS[line][1]
    if sources is None:  # K-beta group: everything not from the L shell
        share = sum(p for s, p in transitions if not s.startswith("L"))
    else:
        share = sum(p for s, p in transitions if s in sources)
    total = sum(p for _, p in transitions)
    return float(share / total)
