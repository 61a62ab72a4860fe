"""SHA-256 checksum files beside a series' files: written once, checked on every load.

Microscope files and HyperSpy's formats carry no checksums of their data: a byte changed
by a failing disk, a bad copy or a transfer loads back as different numbers, without an
error (HDF5 and zarr only notice damage to their headers or compressed chunks). A
checksum file beside each file closes that gap: ``tilt_+10.bcf.sha256`` holds the
file's SHA-256 in the format of GNU ``sha256sum`` (``<hex digest>  <name>``), so it
can be written right after acquisition with ``sha256sum tilt_+10.bcf >
tilt_+10.bcf.sha256`` or :func:`write_checksum`, and checked with ``sha256sum -c`` or
:func:`verify_checksum`. A folder format (``.zspy``) gets one line per file inside it,
paths relative to the folder that holds it.

:func:`hyperspy_hebt.io.load_tilt_series` checks every file that has a checksum file
before reading it (``verify_checksums=True``), and the simulator writes them. A file
without one cannot be checked and is read as it is.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["CHECKSUM_SUFFIX", "ChecksumMismatch", "file_sha256", "verify_checksum",
           "write_checksum"]

#: Suffix of the checksum file beside a file or folder.
CHECKSUM_SUFFIX = ".sha256"

_BLOCK_BYTES = 1 << 20


class ChecksumMismatch(ValueError):
    """A file differs from the checksum written beside it (damaged or changed since).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from hyperspy_hebt.checksums import ChecksumMismatch, verify_checksum, write_checksum
    >>> path = Path(tempfile.mkdtemp()) / "tilt_0.hspy"
    >>> _ = path.write_bytes(b"spectra")
    >>> _ = write_checksum(path)
    >>> _ = path.write_bytes(b"spectrA")  # one byte changed since
    >>> try:
    ...     verify_checksum(path)
    ... except ChecksumMismatch:
    ...     print("refused")
    refused
    """


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as hex (read in 1 MiB blocks).

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
        64 hexadecimal digits.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from hyperspy_hebt.checksums import file_sha256
    >>> path = Path(tempfile.mkdtemp()) / "tilt_0.hspy"
    >>> _ = path.write_bytes(b"spectra")
    >>> file_sha256(path)
    'e285cdd85064e369f2a8abef7052b621d9e596b3a29a8aadba8070de08c566c0'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _members(path: Path) -> list[Path]:
    """The files a checksum covers: ``path`` itself, or every file under a folder."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def write_checksum(path: str | os.PathLike) -> Path:
    """Write the SHA-256 of ``path`` (a file, or every file in a folder) beside it.

    Parameters
    ----------
    path : str or path-like
        A file (``tilt_+10.bcf``) or a folder format (``series.zspy``).

    Returns
    -------
    Path
        The checksum file, ``path`` + ``.sha256``, in ``sha256sum`` format (paths relative
        to ``path``'s folder, so ``sha256sum -c`` run there checks it).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``path`` is an empty folder (nothing to check).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from hyperspy_hebt.checksums import verify_checksum, write_checksum
    >>> path = Path(tempfile.mkdtemp()) / "tilt_0.hspy"
    >>> _ = path.write_bytes(b"spectra")
    >>> write_checksum(path).name
    'tilt_0.hspy.sha256'
    >>> verify_checksum(path)
    True
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: nothing to write a checksum of.")
    members = _members(path)
    if not members:
        raise ValueError(f"{path} is an empty folder: nothing to write a checksum of.")
    lines = [f"{file_sha256(m)}  {m.relative_to(path.parent).as_posix()}\n" for m in members]
    sidecar = _sidecar(path)
    temporary = sidecar.with_name(sidecar.name + ".partial")
    temporary.write_text("".join(lines), encoding="utf-8")
    os.replace(temporary, sidecar)  # never a half-written checksum file
    return sidecar


def _listed(sidecar: Path) -> dict[str, str]:
    """``{relative posix path: hex digest}`` of a ``sha256sum`` file."""
    listed = {}
    for number, line in enumerate(sidecar.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, separator, name = line.partition(" ")
        name = name[1:] if name[:1] in (" ", "*") else name  # text or binary mode mark
        if (not separator or len(digest) != 64 or not name
                or any(c not in "0123456789abcdefABCDEF" for c in digest)):
            raise ChecksumMismatch(
                f"{sidecar}, line {number}: expected '<64 hex digits>  <file name>' "
                f"(sha256sum's format), got {line[:80]!r}.")
        listed[name] = digest.lower()
    return listed


def verify_checksum(path: str | os.PathLike) -> bool:
    """Check ``path`` against the checksum file beside it, if there is one.

    Reads every byte of ``path`` once.

    Parameters
    ----------
    path : str or path-like
        A file or a folder format.

    Returns
    -------
    bool
        True when checked and equal; False when there is no checksum file.

    Raises
    ------
    ChecksumMismatch
        A file differs from its checksum, is missing, or (in a folder) is not listed; the
        message names the file and the checksum file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from hyperspy_hebt.checksums import verify_checksum, write_checksum
    >>> path = Path(tempfile.mkdtemp()) / "tilt_0.hspy"
    >>> _ = path.write_bytes(b"spectra")
    >>> verify_checksum(path)  # no checksum file beside it: nothing to check
    False
    >>> _ = write_checksum(path)
    >>> verify_checksum(path)
    True
    """
    path = Path(path)
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        return False
    listed = _listed(sidecar)
    remedy = (f"It was damaged or changed after {sidecar.name} was written: copy it again "
              "from the original (or, if it was changed on purpose, write a new checksum "
              "with hyperspy_hebt.checksums.write_checksum).")
    # Names relative to the checksum file's folder, or absolute (``sha256sum /data/f``).
    expected = {(path.parent / name).resolve(): digest for name, digest in listed.items()}
    present = {m.resolve(): m for m in _members(path)}
    for missing in sorted(set(expected) - set(present)):
        raise ChecksumMismatch(f"{missing} is listed in {sidecar} but missing. " + remedy)
    for extra in sorted(set(present) - set(expected)):
        raise ChecksumMismatch(f"{present[extra]} is not listed in {sidecar}. " + remedy)
    for key, member in present.items():
        if file_sha256(member) != expected[key]:
            raise ChecksumMismatch(f"{member} does not match its SHA-256 in {sidecar}. "
                                   + remedy)
    return True
