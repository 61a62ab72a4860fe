"""Regions of a quantified volume and their composition tables."""

import hyperspy.api as hs
import numpy as np
import pytest

from hyperspy_hebt.regions import composition_figure, composition_table


def fractions():
    """A cap (Pt 0.9, Fe 0.1) over a specimen (Fe 0.4, O 0.6 with a spread), vacuum
    around: (y, z, x) = (6, 4, 5)."""
    shape = (6, 4, 5)
    pt, fe, o = (np.zeros(shape, np.float32) for _ in range(3))
    pt[:2, 1:3], fe[:2, 1:3] = 0.9, 0.1
    rng = np.random.default_rng(0)
    share = 0.4 + rng.uniform(-0.05, 0.05, (4, 2, 5)).astype(np.float32)
    fe[2:, 1:3], o[2:, 1:3] = share, 1 - share
    out = []
    for element, data in (("Pt", pt), ("Fe", fe), ("O", o)):
        signal = hs.signals.Signal2D(data)
        signal.metadata.set_item("Sample.elements", [element])
        out.append(signal)
    return out, share


def test_rules_split_the_specimen():
    maps, share = fractions()
    table = composition_table(maps, {"all": "inside", "cap": "Pt dominates",
                                     "specimen": "not Pt dominates", "iron": "Fe > 0.3",
                                     "no oxygen": "O < 0.01"})
    assert table["all"]["voxels"] == 6 * 2 * 5
    assert table["cap"]["voxels"] == 2 * 2 * 5 and table["cap"]["mean"]["Pt"] == \
        pytest.approx(0.9)
    specimen = table["specimen"]
    assert specimen["voxels"] == 4 * 2 * 5
    assert specimen["mean"]["Fe"] == pytest.approx(share.mean(), rel=1e-6)
    assert specimen["std"]["Fe"] == pytest.approx(share.std(), rel=1e-5)
    assert specimen["mean"]["Pt"] == 0
    assert table["iron"]["voxels"] == specimen["voxels"]
    assert table["no oxygen"] == {**table["cap"], "rule": "O < 0.01"}
    # A boolean volume is a region too (cut to the voxels inside).
    mask = np.zeros((6, 4, 5), bool)
    mask[:, :, 0] = True
    assert composition_table(maps, {"column": mask})["column"]["voxels"] == 6 * 2
    empty = composition_table(maps, ["Pt > 0.95"])["Pt > 0.95"]
    assert empty["voxels"] == 0 and empty["mean"]["Fe"] is None
    figure = composition_figure(table)
    assert len(figure.axes[0].patches) == 3 * len(table)


def test_bad_regions_are_refused():
    maps, _ = fractions()
    with pytest.raises(ValueError, match="not understood"):
        composition_table(maps, ["Pt rules"])
    with pytest.raises(ValueError, match="names Au, which was not quantified"):
        composition_table(maps, ["Au dominates"])
    with pytest.raises(ValueError, match="boolean with shape"):
        composition_table(maps, {"m": np.ones((6, 4), bool)})
    with pytest.raises(TypeError, match="list of rules"):
        composition_table(maps, "inside")


def test_quantification_records_the_regions(series):
    rec = series.reconstruct_sirt(iterations=10)
    wf = series.quantify_cross_section(rec, regions=["inside", "Au dominates"])
    table = wf[0].metadata.Quantification.Regions
    assert table.inside.voxels == int((sum(f.data for f in wf) > 0).sum())
    assert table["Au dominates"].voxels <= table.inside.voxels
    with pytest.raises(ValueError, match="lazy"):
        series.as_lazy().quantify_cross_section([r.as_lazy() for r in rec],
                                                regions=["inside"])
