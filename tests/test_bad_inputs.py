"""No lost results (issue 13): result folders are written whole or not at all, an
existing one is replaced only on request, and an interrupted run (Ctrl-C, SIGTERM,
SIGKILL) leaves the previous results complete and loadable."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import hyperspy.api as hs
import numpy as np
import pytest

from hyperspy_hebt._outputs import ResultWriter, check_result_folder
from hyperspy_hebt.cli import main
from hyperspy_hebt.simulation import (
    core_shell_particle,
    simulate_acquisition,
    write_acquisition_files,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    particle = core_shell_particle(24, 24, pixel_size_nm=3.0, core_radius=0.2,
                                   shell_radius=0.35)
    acquisition = simulate_acquisition(particle, ["Ag_La", "Au_Ma"],
                                       tilt_angles_deg=np.linspace(-70, 70, 15),
                                       energy_axis_kev=(0.0, 0.02, 200))
    path = tmp_path_factory.mktemp("raw")
    write_acquisition_files(acquisition, path)
    return path


def _command(folder, out, *extra):
    return ["reconstruct", str(folder / "tilt_*.hspy"), "--tilt-from", "filename",
            "--elements", "Ag", "Au", "--method", "sirt", "--iterations", "10",
            "--out", str(out), *extra]


def _previous_run(out, method="SIRT"):
    """A folder as a finished run leaves it (a summary and one file)."""
    out.mkdir()
    (out / f"Ag_La_{method}.tif").write_bytes(b"volume")
    (out / "summary.json").write_text(json.dumps({"algorithm": method}))


def test_result_folder_is_checked_before_the_run(tmp_path):
    afile = tmp_path / "results.txt"
    afile.write_text("notes")
    with pytest.raises(ValueError, match=r"out_dir '.*results.txt' is a file"):
        check_result_folder(afile, overwrite=True)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "raw_0.bcf").write_bytes(b"data")
    for overwrite in (False, True):  # never: they are not ours to delete
        with pytest.raises(ValueError, match="1 entries that are not a previous run's"):
            check_result_folder(foreign, overwrite)
    previous = tmp_path / "previous"
    _previous_run(previous)
    with pytest.raises(ValueError, match="holds a previous run's results; pass overwrite"):
        check_result_folder(previous, overwrite=False)
    check_result_folder(previous, overwrite=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    check_result_folder(empty, overwrite=False)
    check_result_folder(tmp_path / "new" / "deeper", overwrite=False)
    assert (afile.read_text(), (foreign / "raw_0.bcf").read_bytes()) == ("notes", b"data")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_place_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="cannot be written"):
            check_result_folder(locked / "results", overwrite=False)
    finally:
        locked.chmod(0o700)


def test_writer_replaces_whole_or_leaves_the_previous_results(tmp_path):
    out = tmp_path / "results"
    _previous_run(out, "HEBT")
    # A run that fails half-way: its files vanish, the previous ones stay.
    with pytest.raises(RuntimeError, match="half-way"):
        with ResultWriter(out, overwrite=True) as writer:
            staging = writer.open()
            (staging / "Ag_La_SIRT.tif").write_bytes(b"new")
            raise RuntimeError("half-way")
    assert not staging.exists()
    assert sorted(p.name for p in out.iterdir()) == ["Ag_La_HEBT.tif", "summary.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["results"]  # nothing hidden left
    # A run that finishes replaces the folder whole: no file of the HEBT run stays.
    with ResultWriter(out, overwrite=True) as writer:
        staging = writer.open()
        (staging / "Ag_La_SIRT.tif").write_bytes(b"new")
        writer.commit({"algorithm": "SIRT"})
    assert sorted(p.name for p in out.iterdir()) == ["Ag_La_SIRT.tif", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["output_files"] == [{"path": "Ag_La_SIRT.tif", "bytes": 3,
                                        "sha256": hashlib.sha256(b"new").hexdigest()}]
    assert [p.name for p in tmp_path.iterdir()] == ["results"]


def test_any_byte_changed_in_a_result_folder_is_named(tmp_path):
    """HDF5 and zarr read a flipped byte back without complaint; the SHA-256 list that
    summary.json keeps names the file, whichever byte of whichever file it was."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from hyperspy_hebt._outputs import verify_results

    out = tmp_path / "results"
    contents = {"Ag_La_SIRT.tif": bytes(range(256)) * 4, "volumes/Au.zspy/data/0.0": b"z" * 300,
                "notes.txt": b"run"}
    with ResultWriter(out) as writer:
        staging = writer.open()
        for name, data in contents.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        writer.commit({"algorithm": "SIRT"})
    assert verify_results(out) == 3

    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(sorted(contents)), st.data())
    def check(name, data):
        original = contents[name]
        where = data.draw(st.integers(0, len(original) - 1))
        flip = data.draw(st.integers(1, 255))
        damaged = bytearray(original)
        damaged[where] ^= flip
        (out / name).write_bytes(bytes(damaged))
        try:
            with pytest.raises(ValueError, match=re.escape(name) + " has changed"):
                verify_results(out)
        finally:
            (out / name).write_bytes(original)

    check()
    (out / "notes.txt").write_bytes(b"ru")
    with pytest.raises(ValueError, match="notes.txt has 2 bytes, 3 written"):
        verify_results(out)
    (out / "notes.txt").unlink()
    with pytest.raises(ValueError, match="notes.txt is missing"):
        verify_results(out)
    with pytest.raises(ValueError, match="no list of output files"):
        verify_results(tmp_path)


@pytest.mark.slow
def test_command_line_refuses_then_overwrites_and_lists_checksums(folder, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(_command(folder, out)) == 0
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    assert "files as written" in capsys.readouterr().out
    some_file = out / "Ag_weight_fraction_SIRT.tif"
    kept = some_file.read_bytes()
    some_file.write_bytes(kept[:-1] + bytes([kept[-1] ^ 1]))
    assert main(["verify", str(out)]) == 1
    assert "Ag_weight_fraction_SIRT.tif has changed" in capsys.readouterr().err
    some_file.write_bytes(kept)
    summary = json.loads((out / "summary.json").read_text())
    listed = {f["path"]: f for f in summary["output_files"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(listed) == on_disk - {"summary.json"}
    some = out / "Ag_weight_fraction_SIRT.tif"
    assert listed[some.name]["sha256"] == hashlib.sha256(some.read_bytes()).hexdigest()
    assert all(str(out) in path for path in summary["outputs"])  # final, not staging
    capsys.readouterr()
    assert main(_command(folder, out)) == 2
    assert "holds a previous run's results; pass overwrite=True (--overwrite)" in \
        capsys.readouterr().err
    capsys.readouterr()
    assert main(_command(folder, out, "--overwrite", "--quiet")) == 0
    assert capsys.readouterr().out == ""  # --quiet: no stages, no progress bar
    assert [p.name for p in tmp_path.iterdir()] == ["results"]
    # The simulator's files carry checksum files: every one checked, and recorded.
    checked = json.loads((out / "summary.json").read_text())["checksums"]
    assert len(checked["verified"]) == 15 and checked["no_checksum_file"] == []


def _wait_for_saving(parent, process, timeout_s=240.0):
    """Until a file appears in the run's hidden staging folder (it is saving)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        for staging in parent.glob(".results.partial-*"):
            if any(p.is_file() for p in staging.rglob("*")):
                return
        if process.poll() is not None:
            raise AssertionError(f"the run ended ({process.returncode}) before saving: "
                                 + process.stderr.read().decode()[-2000:])
        time.sleep(0.01)
    raise AssertionError("the run never started saving")


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_run_killed_while_saving_leaves_the_previous_results(folder, tmp_path, how):
    out = tmp_path / "results"
    assert main(_command(folder, out)) == 0
    before = (out / "summary.json").read_text()
    files = sorted(p.relative_to(out) for p in out.rglob("*"))
    # A suite started as a background job runs with SIGINT ignored, which a child
    # inherits (Python then installs no KeyboardInterrupt handler and the run finishes):
    # the child gets the default disposition back, as it has in a terminal.
    process = subprocess.Popen(
        [sys.executable, "-m", "hyperspy_hebt", *_command(folder, out, "--overwrite")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for_saving(tmp_path, process)
        process.send_signal(how)
        process.wait(timeout=120)
    finally:
        process.kill()
    assert process.returncode != 0
    assert (out / "summary.json").read_text() == before
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == files
    rec = hs.load(out / "HEBT_reconstruction_of_Ag_La.zspy"
                  if (out / "HEBT_reconstruction_of_Ag_La.zspy").exists()
                  else out / "SIRT_reconstruction_of_Ag_La.zspy")
    assert np.isfinite(rec.data).all() and rec.data.any()
    left = [p.name for p in tmp_path.iterdir() if p.name != "results"]
    if how == signal.SIGKILL:  # no chance to clean up: a hidden, partial sibling
        assert all(name.startswith(".results.partial-") for name in left)
    else:
        assert left == []


# --- Bad values that used to pass or fail deep inside (issue 13's opaque errors) ---

@pytest.mark.parametrize("lines, words", [
    (["Xx_Ka"], r"'Xx_Ka' names no known element \('Xx'\)"),
    (["Ag_Kz"], r"Ag has no line 'Kz'; its lines are \['Ka', 'Kb', 'La'"),
    (["AgLa"], r"'AgLa' is not a line name such as 'Fe_Ka'"),
    (["Ag_La_x"], r"'Ag_La_x' is not a line name"),
    ([3], r"3 is not a line name"),
])
def test_unknown_lines_are_named(lines, words):
    from helpers import make_series

    series = make_series(lazy=True)
    for call in (lambda: series.reconstruct_sirt(iterations=2, xray_lines=lines),
                 lambda: series.cross_validate(None, methods=("sirt",), iterations=(2,),
                                               xray_lines=lines)):
        with pytest.raises(ValueError, match=words):
            call()


def test_complex_and_boolean_data_are_refused():
    from helpers import make_series

    series = make_series()
    for data, words in ((series.data.astype(np.complex64), "the spectra hold complex"),
                        (series.data > 0, "the spectra hold boolean")):
        odd = series._deepcopy_with_new_data(data)
        lazy = series.as_lazy()
        lazy.data = lazy.data.astype(data.dtype) if data.dtype.kind == "c" else lazy.data > 0
        for source in (odd, lazy):
            with pytest.raises(TypeError, match=words):
                source.reconstruct_sirt(iterations=2)
    maps = series.get_lines_intensity(integration_windows=2.0)
    adf = sum(m.data for m in maps)
    with pytest.raises(TypeError, match=r"adf data must be real numbers, got dtype complex128"):
        series.reconstruct_hebt(adf.astype(complex), iterations=2)
    given = [maps[0].data > 0, maps[1].data]
    with pytest.raises(TypeError, match="the Ag_La map hold boolean"):
        series.reconstruct_sirt(iterations=2, intensities=given, xray_lines=["Ag_La", "Au_Ma"])


def test_a_grid_too_large_for_memory_is_refused_up_front(monkeypatch):
    """padding_px=10_000_000 used to fail with numpy's MemoryError after trying to
    allocate 4.8 GiB; now the estimate is compared with the available memory first."""
    import tracemalloc

    from helpers import make_series

    from hyperspy_hebt._reconstruction import field as _field
    from hyperspy_hebt.tomography import ParallelBeamGeometry
    from hyperspy_hebt.tomography.projector import make_projector

    # The estimate is an upper one, and not a wild one: against the traced peak of
    # building a lamella-like padded grid's projector (W, W^T and the build's arrays).
    # Measured 1.75x the peak here and on the 956 x 256 lamella grid; 3x leaves room
    # for numpy's temporaries changing, and would still catch a per-weight cost
    # off by a factor of two either way.
    geometry = ParallelBeamGeometry(tuple(np.linspace(-60, 60, 16)), 64, n_x=240, n_z=64)
    # Imports made by a first build (bytecode compiled in a fresh clone) are no grid's.
    make_projector(ParallelBeamGeometry((-30.0, 30.0), 4))
    tracemalloc.start()
    make_projector(geometry)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= _field.grid_memory_bytes(geometry) <= 3 * peak
    series = make_series(lazy=True)
    monkeypatch.setattr(_field, "available_memory_bytes", lambda: 2**29)  # 0.5 GiB
    with pytest.raises(ValueError, match=r"needs about \d+\.\d GiB at once and this machine "
                                         r"has 0.5 GiB available. Give fewer padding"):
        series.reconstruct_sirt(iterations=2, padding_px=100_000)
    series.reconstruct_sirt(iterations=2, padding_px=8)  # a sensible grid passes


@pytest.mark.parametrize("extra, words", [
    (["--bin", "5"], r"bin_factor 5 does not divide the scan \(24 x 24 pixels\); bin by one "
                     r"of \[2, 3, 4, 6, 8, 12, 24\]"),
    (["--region", "bogus"], "region rule 'bogus' is not understood"),
    (["--region", "Fe dominates"], r"names Fe, which was not quantified \(elements: \['Ag', "
                                   r"'Au'\]\)"),
    (["--out", "/dev/null"], "is a file, not a folder"),
])
def test_command_line_refuses_late_failures_before_the_run(folder, tmp_path, capsys, extra,
                                                           words):
    """Binning and region rules used to fail after the reconstruction (dask's
    NotImplementedError, or the rule parsed once the volumes were quantified)."""
    out = tmp_path / "results"
    command = _command(folder, out, *extra)
    if "--out" in extra:
        command = command[:-4] + extra  # the second --out wins in argparse anyway
    start = time.monotonic()
    assert main(command) == 2
    assert re.search(words, capsys.readouterr().err)
    assert time.monotonic() - start < 30  # nothing was reconstructed
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_damaged_files_are_named(folder, tmp_path, capsys):
    """A truncated .hspy (a copy that stopped early) or a damaged zarr header used to
    raise h5py's or json's error, which does not say which of the series' files it was."""
    import shutil

    from hyperspy_hebt.io import load_tilt_series

    copy = tmp_path / "series"
    shutil.copytree(folder, copy)
    victim = sorted(copy.glob("tilt_*.hspy"))[3]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    # The simulator writes checksum files: the damage is caught before reading.
    with pytest.raises(ValueError, match=rf"{re.escape(str(victim))} does not match its "
                                         "SHA-256"):
        load_tilt_series(str(copy / "tilt_*.hspy"), tilt_from="filename")
    victim.with_name(victim.name + ".sha256").unlink()  # now the reader's own error
    with pytest.raises(ValueError, match=rf"{re.escape(str(victim))} cannot be read .*Is the "
                                         "file complete"):
        load_tilt_series(str(copy / "tilt_*.hspy"), tilt_from="filename")
    assert main(_command(copy, tmp_path / "results")) == 2
    assert f"error: {victim} cannot be read" in capsys.readouterr().err
    zspy = tmp_path / "zarr"
    zspy.mkdir()
    first = hs.load(sorted(folder.glob("tilt_*.hspy"))[0])
    for angle in (-10, 10):
        first.save(zspy / f"tilt_{angle:+d}.zspy")
    load_tilt_series(str(zspy / "tilt_*.zspy"), tilt_from="filename")  # intact: loads
    # A chunk lost in a copy: zarr would read it back as zeros, a blank block.
    chunks = sorted(p for p in (zspy / "tilt_-10.zspy").glob("Experiments/*/data/**/*")
                    if p.is_file() and not p.name.startswith("."))
    chunks[0].unlink()
    with pytest.raises(ValueError, match=r"tilt_-10.zspy: 1 of \d+ chunks of .*data are "
                                         "missing; zarr would read them back as zeros"):
        load_tilt_series(str(zspy / "tilt_*.zspy"), tilt_from="filename", lazy=True)
    (header,) = (zspy / "tilt_+10.zspy" / "Experiments").glob("*/data/.zarray")
    header.write_text(header.read_text()[:40])
    with pytest.raises(ValueError, match=r"tilt_\+10.zspy cannot be read"):
        load_tilt_series(str(zspy / "tilt_*.zspy"), tilt_from="filename")


def test_a_nan_voxel_is_never_quantified_as_zero():
    """It used to compare False with the threshold and read as 'outside': 0 wt%."""
    import dask
    from helpers import make_series

    series = make_series()
    recs = series.reconstruct_sirt(iterations=5)
    spoiled = [rec.deepcopy() for rec in recs]
    spoiled[1].data[1, 3, 8] = np.nan  # (y, z, x): one voxel of Au_Ma
    with pytest.raises(ValueError, match="hold 1 of .* voxels that are NaN or infinite"):
        series.quantify_cross_section(spoiled)
    lazy = [rec.as_lazy() for rec in spoiled]
    fractions = series.quantify_cross_section(lazy)  # the ESF is fitted when computed
    with pytest.raises(ValueError, match="NaN or infinite"):
        dask.compute(*[f.data for f in fractions])
    for given in (spoiled, lazy):
        fractions = series.quantify_cross_section(given, threshold=None)
        values = [np.asarray(f.data) for f in fractions]
        assert all(np.isnan(v[1, 3, 8]) for v in values)  # both elements: unknown
        assert sum(np.isnan(v).sum() for v in values) == len(values)
        reference = series.quantify_cross_section(recs, threshold=None)
        np.testing.assert_allclose(values[0][0], reference[0].data[0], rtol=1e-6)


@pytest.mark.parametrize("lazy", [False, True])
def test_threads_sharing_one_signal(lazy):
    """Four threads reconstructing from one signal crashed in HyperSpy's slicing ("too
    many indices"): each method now works on a view of its own."""
    import threading

    from helpers import make_series

    series = make_series(lazy=lazy)
    reference = [np.asarray(r.data) for r in series.reconstruct_sirt(iterations=3)]
    results, errors = {}, []

    def work(index):
        try:
            recs = series.reconstruct_sirt(iterations=3)
            results[index] = [np.asarray(r.data) for r in recs]
        except Exception as error:  # collected: an assertion in a thread is lost
            errors.append(repr(error))

    for _ in range(2):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    for volumes in results.values():
        for volume, expected in zip(volumes, reference):
            np.testing.assert_array_equal(volume, expected)
    assert hasattr(series, "learning_results") and series.data is not None


def test_negative_maps_beyond_counting_noise_are_refused():
    """Issue 13: one pixel at -1e4 changed the weight fractions by 99 %, an offset of -3
    counts per channel the reconstruction by 22 %, both without a word."""
    from helpers import make_series

    series = make_series()
    spike = series.deepcopy()
    spike.data = spike.data.astype(np.float32)
    spike.data[2, 1, 5, 147:151] = -2500  # inside the Ag La window: -1e4 in one pixel
    offset = series._deepcopy_with_new_data(series.data.astype(np.float32) - 3)
    for bad, words in ((spike, r"Ag_La map \(window sums .*1 pixel\(s\) below .*-9\d\d\d"),
                       (offset, r"negative pixels averaging -2\d(\.\d)?: .* negative offset")):
        for source in (bad, bad.as_lazy()):
            with pytest.raises(ValueError, match=words):
                source.reconstruct_sirt(iterations=2)
        with pytest.raises(ValueError, match="clip the spectra at 0 yourself"):
            bad.cross_validate(None, methods=("sirt",), iterations=(2,))
    maps = series.get_lines_intensity(integration_windows=2.0)
    lines = ["Ag_La", "Au_Ma"]
    absent = [-maps[0].data, maps[1].data]  # a map negative in total
    with pytest.raises(ValueError, match="The Ag_La map is negative in total"):
        series.reconstruct_sirt(iterations=2, intensities=absent, xray_lines=lines)
    shifted = [maps[0].data - maps[0].data.max(), maps[1].data]
    shifted[0][0, 0, 0] = 1e6  # positive in total, yet almost every pixel negative
    with pytest.raises(ValueError, match=r"\d\d % of the Ag_La map's pixels are negative"):
        series.reconstruct_sirt(iterations=2, intensities=shifted, xray_lines=lines)
    # Noise about zero (a background-subtracted map of an empty region) is accepted.
    rng = np.random.default_rng(0)
    noisy = [maps[0].data + rng.normal(0, 3, maps[0].data.shape), maps[1].data]
    series.reconstruct_sirt(iterations=2, intensities=noisy, xray_lines=lines)


def _api_cases():
    """(name, call, error, words) for bad arguments across the public API: each must be
    refused with the culprit named (most were already; kept here so they stay so)."""
    from helpers import make_series

    from hyperspy_hebt import load_tilt_series

    series = make_series()
    recs = series.reconstruct_sirt(iterations=2)
    adf = sum(m.data for m in series.get_lines_intensity(integration_windows=2.0)).astype(float)
    nav = series.axes_manager.navigation_shape[::-1]
    sirt, hebt = series.reconstruct_sirt, series.reconstruct_hebt
    cv, quant = series.cross_validate, series.quantify_cross_section
    pattern = "/nonexistent/*.hspy"
    return [
        ("sigma < 0", lambda: sirt(iterations=2, gaussian_sigma=-1), ValueError,
         "gaussian_sigma must be a finite number >= 0"),
        ("sigma axis", lambda: sirt(iterations=2, gaussian_sigma={"q": 1}), ValueError,
         "gaussian_sigma has key 'q'"),
        ("rotation axis", lambda: sirt(iterations=2, rotation_axis="z"), ValueError,
         "rotation_axis='z' must name exactly one spatial navigation axis"),
        ("map shape", lambda: sirt(iterations=2, intensities=[np.ones((3, 3))],
                                   xray_lines=["Ag_La"]), ValueError,
         r"intensities\[0\] has data shape \(3, 3\)"),
        ("map count", lambda: sirt(iterations=2, intensities=[np.ones(nav)],
                                   xray_lines=["Ag_La", "Au_Ma"]), ValueError,
         "xray_lines has 2 names for 1 intensities"),
        ("mask shape", lambda: sirt(iterations=2, invalid_pixels=np.zeros((2, 2), bool)),
         ValueError, r"invalid_pixels has shape \(2, 2\)"),
        ("window count", lambda: sirt(iterations=2, integration_windows=[[2.9, 3.0]]),
         ValueError, r"integration_windows must be .* shape \(2, 2\)"),
        ("background", lambda: sirt(iterations=2, background_windows="yes"), ValueError,
         "background_windows must be None, 'auto' or an array"),
        ("adf shape", lambda: hebt(np.ones((2, 2)), iterations=2), ValueError,
         r"adf has data shape \(2, 2\)"),
        ("alpha < 0", lambda: hebt(adf, alpha=-0.1, iterations=2), ValueError,
         r"alpha must lie in \[0, 1\)"),
        ("alpha nan", lambda: hebt(adf, alpha=float("nan"), iterations=2), ValueError,
         r"alpha must lie in \[0, 1\)"),
        ("ratio missing", lambda: hebt(adf, iterations=2, response_ratios={"Ag_La": 1}),
         ValueError, r"response_ratios has no entry for \['Au_Ma'\]"),
        ("ratio < 0", lambda: hebt(adf, iterations=2,
                                   response_ratios={"Ag_La": -1, "Au_Ma": 1}), ValueError,
         r"response_ratios\['Ag_La'\] must be a finite number >= 0"),
        ("adf nan", lambda: hebt(np.where(adf > 0, adf, np.nan), iterations=2), ValueError,
         "adf contains .* NaN or infinite values"),
        ("holdout", lambda: cv(None, methods=("sirt",), holdout=1), ValueError,
         "holdout must be an integer from 2 to"),
        ("no counts", lambda: cv(None, methods=("sirt",), iterations=()), ValueError,
         "iterations is empty"),
        ("one count", lambda: cv(None, methods=("sirt",), iterations=20), TypeError,
         "iterations must be a sequence of iteration counts"),
        ("cv alpha", lambda: cv(adf, alphas=(1.5,), iterations=(2,)), ValueError,
         r"alpha must lie in \[0, 1\)"),
        ("slices 0", lambda: cv(None, methods=("sirt",), iterations=(2,), slices=0),
         ValueError, "slices must be a positive number"),
        ("slice index", lambda: cv(None, methods=("sirt",), iterations=(2,), slices=[99]),
         ValueError, r"slices must be indices in \[0, 3\)"),
        ("factor < 0", lambda: quant(recs, factors=[-1, 1]), ValueError,
         "factors must be finite and > 0"),
        ("factor count", lambda: quant(recs, factors=[1]), ValueError,
         "factors has 1 values for 2 reconstructions"),
        ("threshold", lambda: quant(recs, threshold=-1), ValueError,
         "threshold must be 'esf', None or a number >= 0"),
        ("units", lambda: quant(recs, composition_units="mass"), ValueError,
         "composition_units must be 'weight' or 'atomic', got 'mass'"),
        ("no recs", lambda: quant([]), ValueError, "reconstructions is empty"),
        ("array recs", lambda: quant([np.ones(3)]), TypeError,
         r"reconstructions\[0\] must be a HyperSpy signal"),
        ("rec shapes", lambda: quant([recs[0], recs[1].inav[:1]]), ValueError,
         r"reconstructions\[1\] comes from a different geometry"),
        ("efficiency 0", lambda: quant(recs, detector_efficiency=0), ValueError,
         r"detector_efficiency must lie in \(0, 1\]"),
        ("angle count", lambda: series.deepcopy().set_tilt_angles([1, 2]), ValueError,
         "tilt_angles has 2 values but the tilt axis"),
        ("angle repeat", lambda: series.deepcopy().set_tilt_angles([0] * 9), ValueError,
         "tilt_angles must not repeat"),
        ("angle 95", lambda: series.deepcopy().set_tilt_angles(np.linspace(-95, 95, 9)),
         ValueError, r"\|angle\| < 90"),
        ("no file", lambda: load_tilt_series(pattern), FileNotFoundError,
         "paths: no file matches"),
    ]


def test_bad_api_arguments_name_the_culprit():
    for name, call, error, words in _api_cases():
        with pytest.raises(error, match=words):
            call()
        print("refused:", name)


def test_maps_integrated_by_the_reconstruct_command_are_checked_as_counts():
    """The command integrates the maps itself (one pass with the sum spectrum) and
    passes them on; tagged, they get the window-sum checks a spike needs."""
    from helpers import make_series

    from hyperspy_hebt._reconstruction.intensities import LINE_INTEGRATION

    series = make_series()
    maps = series.get_lines_intensity(integration_windows=1.0)
    maps[0].data = maps[0].data.astype(float)
    maps[0].data[2, 1, 5] = -5000.0
    lines = ["Ag_La", "Au_Ma"]
    series.reconstruct_sirt(iterations=2, intensities=maps, xray_lines=lines)  # "user" maps
    for image in maps:
        image.metadata.set_item(LINE_INTEGRATION, {"integration_window_fwhm": 1.0})
    with pytest.raises(ValueError, match=r"The Ag_La map \(window sums of the spectra"):
        series.reconstruct_sirt(iterations=2, intensities=maps, xray_lines=lines)


def _same_signal(a, b) -> bool:
    """Same data and metadata, but for the record of which file was read when."""
    def described(signal):
        record = signal.metadata.as_dictionary()
        for key in ("FileIO", "original_filename"):
            record.get("General", {}).pop(key, None)
        return record

    return (np.array_equal(np.asarray(a.data), np.asarray(b.data))
            and described(a) == described(b))


@pytest.fixture(scope="module")
def one_tilt(tmp_path_factory):
    """One per-tilt spectrum image saved as .hspy and as .zspy (small chunks)."""
    from helpers import make_series

    series = make_series()
    image = series.inav[:, :, 4]
    image.metadata.General.title = "EDS tilt +0"
    path = tmp_path_factory.mktemp("one_tilt")
    image.save(path / "tilt_+0.hspy")
    image.save(path / "tilt_+0.zspy", chunks=(2, 8, 100))
    return path, hs.load(path / "tilt_+0.hspy")


def test_truncated_files_fail_naming_the_file_or_load_identically(one_tilt, tmp_path):
    """A copy that stopped early, at any length: the file is named, or (cut in
    slack space) it loads exactly as written. Property-based over the cut length."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from hyperspy_hebt.io import _read

    source, original = one_tilt
    full = (source / "tilt_+0.hspy").read_bytes()

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.integers(min_value=0, max_value=len(full) - 1))
    def check(keep):
        copy = tmp_path / "tilt_+0.hspy"
        copy.write_bytes(full[:keep])
        try:
            loaded = _read(str(copy), lazy=False)
        except ValueError as error:
            assert str(copy) in str(error)
        else:
            assert _same_signal(loaded, original)

    check()


def test_zarr_files_missing_fail_naming_the_file(one_tilt, tmp_path):
    """Any one file of a .zspy's data array lost in a copy (a chunk or the array's
    header): the series is refused, naming it, never read with zeros in its place."""
    import shutil

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from hyperspy_hebt.io import _read

    source, original = one_tilt
    folder = source / "tilt_+0.zspy"
    data_files = sorted(p.relative_to(folder) for p in folder.glob("Experiments/*/data/**/*")
                        if p.is_file())
    assert len(data_files) > 4  # chunks and .zarray

    @settings(max_examples=15, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(data_files))
    def check(lost):
        copy = tmp_path / "tilt_+0.zspy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(folder, copy)
        (copy / lost).unlink()
        with pytest.raises(ValueError, match=re.escape(str(copy))):
            _read(str(copy), lazy=True)

    check()
    assert _same_signal(_read(str(folder), lazy=False), original)


def test_an_empty_map_is_called_empty_not_negative():
    """A listed line with no counts at all (a real Velox file's Si Ka) is refused as
    empty: "negative in total (0 counts; 0 % negative)" misled."""
    from helpers import make_series

    series = make_series()
    maps = [m.data for m in series.get_lines_intensity(integration_windows=2.0)]
    with pytest.raises(ValueError, match=r"The Au_Ma map holds no counts at all"):
        series.reconstruct_sirt(iterations=2, intensities=[maps[0], 0 * maps[1]],
                                xray_lines=["Ag_La", "Au_Ma"])


def test_damaged_zarr_chunk_fails_naming_the_file_when_read(one_tilt, tmp_path):
    """A chunk present but damaged (a copy cut mid-file) fails only when dask reads it,
    inside blosc: the error must still name the file."""
    import shutil

    from hyperspy_hebt.io import _read

    source, original = one_tilt
    copy = tmp_path / "tilt_+0.zspy"
    shutil.copytree(source / "tilt_+0.zspy", copy)
    chunk = max((p for p in copy.glob("Experiments/*/data/**/*")
                 if p.is_file() and not p.name.startswith(".")), key=lambda p: p.stat().st_size)
    chunk.write_bytes(chunk.read_bytes()[:8])  # a blosc header and nothing else
    loaded = _read(str(copy), lazy=True)  # nothing is read yet
    with pytest.raises(ValueError, match=re.escape(str(copy)) + ".*cannot be read"):
        loaded.data.compute()
    # An intact copy reads through the same path as written.
    intact = _read(str(source / "tilt_+0.zspy"), lazy=True)
    assert _same_signal(intact, original)
