"""The sum-spectrum survey: weak lines of listed elements are theirs, not unlisted ones."""

import numpy as np

from hyperspy_hebt.line_survey import survey_lines
from hyperspy_hebt.simulation import core_shell_particle, synthetic_tilt_series


def _series(lines_counts):
    """A series whose spectra hold exactly these lines (with their families)."""
    particle = core_shell_particle(24, 2, pixel_size_nm=3.0)
    mask = (particle.weight_fractions["Ag"] + particle.weight_fractions["Au"]) > 0
    sinograms = {line: np.repeat(mask.sum(axis=1)[:, None, :], 9, axis=1) * counts
                 for line, counts in lines_counts.items()}
    return synthetic_tilt_series(sinograms, np.linspace(-60, 60, 9), pixel_size_nm=3.0,
                                 energy_axis_kev=(0.0, 0.02, 512), seed=2)


def test_weak_lines_of_listed_elements_are_not_reported_as_unlisted():
    """Ag Ll, Lg1, Lg3 and Au Mz (0.013-0.04 of their family) stand tens of sigma above
    the background at these counts; they were reported as Cl, Ca or K before."""
    survey = survey_lines(_series({"Ag_La": 40.0, "Au_Ma": 40.0}))
    assert survey.unlisted == [], survey.messages()
    assert survey.missing == []


def test_an_unlisted_element_is_still_found():
    """Cu K lines in the spectra, Cu not listed: both reported, Cu among the candidates."""
    series = _series({"Ag_La": 40.0, "Au_Ma": 40.0, "Cu_Ka": 10.0})
    series.set_elements(["Ag", "Au"])
    series.set_lines(["Ag_La", "Au_Ma"])
    survey = survey_lines(series)
    assert [round(p["energy_kev"], 1) for p in survey.unlisted] == [8.0, 8.9]
    assert "Cu_Ka" in survey.unlisted[0]["candidates"]
    assert "Cu_Kb" in survey.unlisted[1]["candidates"]
