"""Checksum files beside a series' files (checksums) and their check on load (io)."""

import re
import shutil
import subprocess

import hyperspy.api as hs
import numpy as np
import pytest
from helpers import make_series
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperspy_hebt.checksums import ChecksumMismatch, verify_checksum, write_checksum
from hyperspy_hebt.io import load_tilt_series


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Three tilts saved one file each (.hspy), one more as .zspy, with checksum files."""
    series = make_series()
    folder = tmp_path_factory.mktemp("series")
    for index, angle in enumerate((-20, 0, 20)):
        image = series.inav[:, :, index]
        image.metadata.General.title = f"EDS tilt {angle:+d}"
        image.save(folder / f"tilt_{angle:+d}.hspy")
        write_checksum(folder / f"tilt_{angle:+d}.hspy")
    image = series.inav[:, :, 3]
    image.save(folder / "tilt_+40.zspy", chunks=(2, 8, 100))
    write_checksum(folder / "tilt_+40.zspy")
    return folder


def _load(folder):
    return load_tilt_series(str(folder / "tilt_*"), tilt_from="filename", lazy=False)[0]


def test_checksum_files_are_sha256sums_and_checked_on_load(saved):
    """The format is GNU sha256sum's (its -c accepts it), and load_tilt_series checks
    every file that has one and records it."""
    text = (saved / "tilt_+0.hspy.sha256").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}  tilt_\+0\.hspy\n", text)
    folder_lines = (saved / "tilt_+40.zspy.sha256").read_text().splitlines()
    assert len(folder_lines) > 5 and all("  tilt_+40.zspy/" in line for line in folder_lines)
    if shutil.which("sha256sum"):
        for name in ("tilt_+0.hspy.sha256", "tilt_+40.zspy.sha256"):
            subprocess.run(["sha256sum", "--quiet", "-c", name], cwd=saved, check=True)
    assert verify_checksum(saved / "tilt_+0.hspy") is True
    series = _load(saved)
    record = series.original_metadata.tilt_series.checksums.as_dictionary()
    assert sorted(record["verified"]) == sorted(
        ["tilt_-20.hspy", "tilt_+0.hspy", "tilt_+20.hspy", "tilt_+40.zspy"])
    assert record["no_checksum_file"] == []


def test_any_byte_changed_in_a_saved_series_is_refused_naming_the_file(saved, tmp_path):
    """HDF5 and zarr read most changed bytes back as different numbers without an error;
    with checksum files, a byte changed anywhere in any of the series' files (a header, a
    chunk, metadata) is refused, naming that file. Property-based over file, place and
    value; an unchanged copy loads as the original."""
    files = sorted(p.relative_to(saved) for p in saved.rglob("*")
                   if p.is_file() and not p.name.endswith(".sha256"))
    original = _load(saved)

    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(files), st.floats(0, 1, exclude_max=True), st.integers(1, 255))
    def check(victim, where, flip):
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(saved, copy)
        damaged = bytearray((copy / victim).read_bytes())
        damaged[int(where * len(damaged))] ^= flip
        (copy / victim).write_bytes(bytes(damaged))
        with pytest.raises(ChecksumMismatch, match=re.escape(str(copy / victim))):
            _load(copy)

    check()
    copy = tmp_path / "intact"
    shutil.copytree(saved, copy)
    np.testing.assert_array_equal(_load(copy).data, original.data)


def test_files_missing_from_or_added_to_a_folder_are_refused(saved, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    chunk = next(p for p in sorted((copy / "tilt_+40.zspy").rglob("*")) if p.is_file()
                 and not p.name.startswith("."))
    chunk.rename(chunk.with_name("moved"))
    with pytest.raises(ChecksumMismatch, match="listed in .* but missing"):
        verify_checksum(copy / "tilt_+40.zspy")
    chunk.with_name("moved").rename(chunk)
    (copy / "tilt_+40.zspy" / "extra").write_bytes(b"0")
    with pytest.raises(ChecksumMismatch, match="extra is not listed"):
        verify_checksum(copy / "tilt_+40.zspy")


def test_checksums_written_by_sha256sum_are_read(saved, tmp_path):
    """Written right after acquisition with sha256sum (absolute or relative names, text or
    binary mode mark): checked the same."""
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    target = copy / "tilt_+0.hspy"
    digest = (copy / "tilt_+0.hspy.sha256").read_text().split()[0]
    for line in (f"{digest}  {target}\n", f"{digest} *tilt_+0.hspy\n"):
        (copy / "tilt_+0.hspy.sha256").write_text(line)
        assert verify_checksum(target) is True
    (copy / "tilt_+0.hspy.sha256").write_text("not a checksum\n")
    with pytest.raises(ChecksumMismatch, match="line 1: expected"):
        verify_checksum(target)


def test_files_without_checksums_load_and_are_listed(saved, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    (copy / "tilt_-20.hspy.sha256").unlink()
    record = _load(copy).original_metadata.tilt_series.checksums
    assert record.no_checksum_file == ["tilt_-20.hspy"]
    assert verify_checksum(copy / "tilt_-20.hspy") is False
    unchecked = load_tilt_series(str(copy / "tilt_*"), tilt_from="filename",
                                 verify_checksums=False)[0]
    assert unchecked.original_metadata.tilt_series.checksums.startswith("not checked")
    with pytest.raises(TypeError, match="verify_checksums must be True or False"):
        load_tilt_series(str(copy / "tilt_*"), tilt_from="filename", verify_checksums="no")


def test_simulated_acquisitions_carry_checksums(tmp_path):
    from hyperspy_hebt.simulation import (
        core_shell_particle,
        simulate_acquisition,
        write_acquisition_files,
    )

    particle = core_shell_particle(8, 8, pixel_size_nm=3.0)
    acquisition = simulate_acquisition(particle, ["Ag_La", "Au_Ma"],
                                       tilt_angles_deg=np.linspace(-60, 60, 3),
                                       energy_axis_kev=(0.0, 0.05, 80))
    paths, adf_paths = write_acquisition_files(acquisition, tmp_path)
    assert all(verify_checksum(p) for p in paths + adf_paths)
    assert isinstance(hs.load(paths[0]), hs.signals.BaseSignal)


def test_writing_a_checksum_of_nothing_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_checksum(tmp_path / "absent.bcf")
    (tmp_path / "empty.zspy").mkdir()
    with pytest.raises(ValueError, match="empty folder"):
        write_checksum(tmp_path / "empty.zspy")
