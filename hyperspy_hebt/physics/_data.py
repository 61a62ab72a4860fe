"""Bote & Salvat (2009) parameter tables, fetched from NIST at a pinned commit.

The tables are public-domain data of the NIST EPQ library (DTSA-II). They are
not shipped with this package: :func:`bote_salvat_tables` fetches them once with
pooch (verified by SHA-256) into pooch's cache, or uses a folder that already
holds them when the environment variable ``HYPERSPY_HEBT_DATA_DIR`` names one.
"""

from __future__ import annotations

import functools
import os

import numpy as np

DATA_DIR_VARIABLE = "HYPERSPY_HEBT_DATA_DIR"
EPQ_COMMIT = "6af85b6dbb0d128a879830db045aea12206d7d41"
BASE_URL = (
    f"https://raw.githubusercontent.com/usnistgov/EPQ/{EPQ_COMMIT}/"
    "src/gov/nist/microanalysis/EPQLibrary/SalvatXion/"
)
REGISTRY = {
    "SalvatXionA.csv": "sha256:9102543bf6029eea78991aa8fab23ddedfb33255e62144af4e6c6fb1a1f5e093",
    "SalvatXionB.csv": "sha256:7c777ac065117c46102f73d3ca1c3da8e4d0235b254e60c410b82c87cfdf5796",
    "xionUis.csv": "sha256:69df1ce59fc440cf6f66e1b7c3e2f188258497ae51622d62f283d38bf9b3cf4f",
}

#: Subshells in the order of the table columns.
SUBSHELLS = ("K", "L1", "L2", "L3", "M1", "M2", "M3", "M4", "M5")


class DataUnavailableError(RuntimeError):
    """The Bote-Salvat tables could not be found or fetched."""


def _fetch(name: str) -> str:
    import pooch

    folder = os.environ.get(DATA_DIR_VARIABLE)
    if folder:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            # A prepared folder (possibly read-only): verify, never write to it.
            expected = REGISTRY[name].split(":", 1)[1]
            actual = pooch.file_hash(path, alg="sha256")
            if actual != expected:
                raise DataUnavailableError(
                    f"{path} has SHA-256 {actual}, expected {expected} (NIST EPQ commit "
                    f"{EPQ_COMMIT}). Replace it with the original file."
                )
            return path
    try:
        return pooch.retrieve(BASE_URL + name, known_hash=REGISTRY[name], fname=name,
                              path=folder or pooch.os_cache("hyperspy_hebt"))
    except Exception as error:  # no network, proxy, HTTP error, hash mismatch ...
        raise DataUnavailableError(
            f"Could not get the Bote-Salvat table {name} ({error}). Either allow access to "
            f"{BASE_URL + name}, or download SalvatXionA.csv, SalvatXionB.csv and "
            f"xionUis.csv from that folder (NIST EPQ repository, commit {EPQ_COMMIT}) into "
            f"a folder and set the environment variable {DATA_DIR_VARIABLE} to it."
        ) from error


def _read_rows(path: str) -> dict[int, np.ndarray]:
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
    """
    return {
        "A": _read_rows(_fetch("SalvatXionA.csv")),
        "B": _read_rows(_fetch("SalvatXionB.csv")),
        "binding_ev": _read_rows(_fetch("xionUis.csv")),
    }
