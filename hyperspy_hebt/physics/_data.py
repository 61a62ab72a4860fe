"""Bote & Salvat (2009) parameter tables, shipped with the package.

The tables are public-domain data of the NIST EPQ library (DTSA-II), repository
usnistgov/EPQ at commit :data:`EPQ_COMMIT`; a copy travels inside the package
(``physics/data/bote_salvat/``, with NIST's notice), so nothing is downloaded and
a first run works offline. Every file is checked against its SHA-256 before use.
The environment variable ``HYPERSPY_HEBT_DATA_DIR`` names a folder to read them
from instead (the same three files, verified the same way).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from ..checksums import file_sha256

DATA_DIR_VARIABLE = "HYPERSPY_HEBT_DATA_DIR"
EPQ_COMMIT = "6af85b6dbb0d128a879830db045aea12206d7d41"
#: Where the originals are: repository usnistgov/EPQ at EPQ_COMMIT, this folder.
EPQ_FOLDER = "src/gov/nist/microanalysis/EPQLibrary/SalvatXion/"
PACKAGED_DIR = Path(__file__).resolve().parent / "data" / "bote_salvat"
REGISTRY = {
    "SalvatXionA.csv": "9102543bf6029eea78991aa8fab23ddedfb33255e62144af4e6c6fb1a1f5e093",
    "SalvatXionB.csv": "7c777ac065117c46102f73d3ca1c3da8e4d0235b254e60c410b82c87cfdf5796",
    "xionUis.csv": "69df1ce59fc440cf6f66e1b7c3e2f188258497ae51622d62f283d38bf9b3cf4f",
}

#: Subshells in the order of the table columns.
SUBSHELLS = ("K", "L1", "L2", "L3", "M1", "M2", "M3", "M4", "M5")


class DataUnavailableError(RuntimeError):
    """The Bote-Salvat tables could not be found, or a file is not the original."""


def data_folder() -> tuple[Path, str]:
    """The folder the tables are read from, and where that choice came from."""
    folder = os.environ.get(DATA_DIR_VARIABLE)
    if folder:
        return Path(folder), f"the environment variable {DATA_DIR_VARIABLE}"
    return PACKAGED_DIR, "the copy shipped with hyperspy_hebt"


def _verified_path(name: str) -> Path:
    folder, origin = data_folder()
    path = folder / name
    if not path.is_file():
        raise DataUnavailableError(
            f"The Bote-Salvat table {name} is not in {folder} (named by {origin}). Put "
            f"SalvatXionA.csv, SalvatXionB.csv and xionUis.csv there (NIST EPQ repository, "
            f"commit {EPQ_COMMIT}, folder {EPQ_FOLDER}), or unset {DATA_DIR_VARIABLE} to "
            "use the copy shipped with the package."
        )
    actual = file_sha256(path)
    if actual != REGISTRY[name]:
        raise DataUnavailableError(
            f"{path} has SHA-256 {actual}, expected {REGISTRY[name]} (NIST EPQ commit "
            f"{EPQ_COMMIT}). Replace it with the original file."
        )
    return path


def _read_rows(path: Path) -> dict[int, np.ndarray]:
    rows = {}
    with open(path) as handle:
        for line in handle:
            values = [float(v) for v in line.replace(",", " ").split()]
            if values:
                rows[int(values[0])] = np.asarray(values[1:])
    return rows


@functools.lru_cache(maxsize=1)
def bote_salvat_tables() -> dict[str, dict[int, np.ndarray]]:
    """The three tables as ``{"A": {Z: row}, "B": {Z: row}, "binding_ev": {Z: row}}``.

    Rows hold 5 (A) or 6 (B) parameters per subshell, or one binding energy
    (eV) per subshell, in the order of :data:`SUBSHELLS`, as far as the atom
    has subshells.

    Raises
    ------
    DataUnavailableError
        A file missing from the folder in use, or one whose SHA-256 differs from
        NIST's original.
    """
    return {
        "A": _read_rows(_verified_path("SalvatXionA.csv")),
        "B": _read_rows(_verified_path("SalvatXionB.csv")),
        "binding_ev": _read_rows(_verified_path("xionUis.csv")),
    }
