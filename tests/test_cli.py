"""The demo command runs end to end and writes what it promises."""

import hyperspy.api as hs

from hyperspy_hebt.cli import main


def test_demo_writes_figure_and_reconstructions(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size", "24", "--slices", "2",
                 "--iterations", "5", "--hebt-iterations", "10"]) == 0
    printed = capsys.readouterr().out
    assert "Ag: weight fraction core" in printed and "particle mask Dice" in printed
    assert "HEBT response ratios" in printed
    assert (tmp_path / "demo.png").stat().st_size > 0
    assert hs.load(tmp_path / "Ag_La_hebt.zspy").metadata.Reconstruction.algorithm == "HEBT"
    rec = hs.load(tmp_path / "Au_Ma_sirt.zspy")
    assert rec.data.shape == (2, 24, 24)
    assert rec.metadata.Reconstruction.iterations == 5
    assert rec.metadata.Sample.xray_lines == ["Au_Ma"]
    fraction = hs.load(tmp_path / "Au_weight_fraction_sirt.zspy")
    assert fraction.metadata.Quantification.factor_name == "f_A"
    assert 0 <= fraction.data.min() and fraction.data.max() <= 1


def test_import_and_help_print_no_warnings():
    """Issue 17: HyperSpy's deprecation warnings about exspy's own imports were printed
    (two blocks) before anything else, ``--help`` included. Our import is silent now, and
    the filter is confined to that import (a user's own warnings still show)."""
    import subprocess
    import sys

    for command in (["-W", "default", "-c", "import hyperspy_hebt"],
                    ["-m", "hyperspy_hebt", "--help"]):
        done = subprocess.run([sys.executable, *command], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0
        assert done.stderr == "", done.stderr[-2000:]
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c",
         "import hyperspy_hebt, warnings; warnings.warn('still shown', DeprecationWarning)"],
        capture_output=True, text=True, timeout=120)
    assert "still shown" in done.stderr
