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


def test_help_shows_defaults_exit_codes_and_version(capsys):
    """Issue 17: every option of reconstruct has help, defaults are shown, the exit codes
    are listed, and --version answers."""
    import pytest

    from hyperspy_hebt import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["reconstruct", "--help"])
    text = capsys.readouterr().out
    assert "(default: auto)" in text and "(default: 1.0)" in text  # --alpha, --gamma
    assert "exit codes:" in text and "130" in text
    options = [line.split()[0] for line in text.splitlines()
               if line.startswith("  --") and "help" not in line]
    assert len(options) > 25
    # Each option has a help text: on its own line, or after the option on the same one.
    for option in options:
        block = text.split(f"  {option}", 1)[1].split("\n  --", 1)[0]
        assert len(block.split()) > 2, option
