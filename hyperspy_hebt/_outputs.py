"""Result folders written whole or not at all.

A run writes into a hidden temporary sibling of its result folder; only when
everything (volumes, figures, and last ``summary.json`` with every file's size and
SHA-256) is written does the sibling take the folder's name, by renames. An interrupted
or failed run removes its sibling (or, killed outright, leaves a hidden ``.partial``
folder) and never touches the previous results, which stay complete and loadable. A
previous run's folder is replaced only on request, and then whole: nothing of another
method's run is left beside the new files. A folder that holds anything but a previous
run's results is never written into.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from .checksums import file_sha256

#: The file that marks a folder as a run's results (written last).
SUMMARY = "summary.json"


def check_result_folder(out: Path, overwrite: bool) -> None:
    """Refuse a result folder that cannot be written as a whole.

    Parameters
    ----------
    out : Path
        The folder the results will have.
    overwrite : bool
        Replace a previous run's results (a folder holding ``summary.json``).

    Raises
    ------
    ValueError
        ``out`` is a file; holds a previous run's results and ``overwrite`` is False;
        or holds other files (never replaced: they are not ours); or its parent
        cannot be written.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} is a file, not a folder; name a new or empty "
                         "folder for the results.")
    if out.is_dir():
        entries = list(out.iterdir())
        if entries and not (out / SUMMARY).is_file():
            raise ValueError(
                f"out_dir {str(out)!r} holds {len(entries)} entries that are not a previous "
                f"run's results (no {SUMMARY}); they would be lost. Name a new or empty "
                "folder for the results.")
        if entries and not overwrite:
            raise ValueError(
                f"out_dir {str(out)!r} holds a previous run's results; pass overwrite=True "
                "(--overwrite) to replace them whole, or name another folder.")
    parent = out.absolute().parent
    if not parent.is_dir():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"out_dir {str(out)!r}: cannot create its parent folder "
                             f"({error.strerror}).") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"out_dir {str(out)!r}: its folder {str(parent)!r} cannot be written.")


def staging_folder(out: Path) -> Path:
    """A new, empty hidden sibling of ``out`` to write the results into."""
    parent = out.absolute().parent
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))


def discard(staging: Path) -> None:
    """Remove a staging folder (a failed or interrupted run)."""
    shutil.rmtree(staging, ignore_errors=True)


def manifest(folder: Path) -> list:
    """Every file under ``folder``: its path relative to it, size in bytes and SHA-256."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        files.append({"path": path.relative_to(folder).as_posix(),
                      "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    return files


def verify_results(folder) -> int:
    """Check a result folder against the SHA-256 manifest its ``summary.json`` holds.

    The reconstruct command lists every file it wrote, with its size and SHA-256, in
    ``summary.json`` (written last). A file changed since (a byte flipped on a disk or in
    a copy, which HDF5 and zarr would read back without complaint), cut short, or lost is
    named here.

    Parameters
    ----------
    folder : str or pathlib.Path
        A folder written by ``python -m hyperspy_hebt reconstruct``.

    Returns
    -------
    int
        The number of files checked.

    Raises
    ------
    ValueError
        No ``summary.json`` with a manifest, or files that differ from it (each named,
        with what differs).
    """
    import json

    folder = Path(folder)
    summary = folder / "summary.json"
    try:
        listed = json.loads(summary.read_text())["output_files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{summary} holds no list of output files to check against "
                         f"({type(error).__name__}: {error}): is {folder} a result folder "
                         "of the reconstruct command?") from error
    found = {row["path"]: row for row in manifest(folder) if row["path"] != "summary.json"}
    problems = []
    for row in listed:
        now = found.get(row["path"])
        if now is None:
            problems.append(f"{row['path']} is missing")
        elif now["bytes"] != row["bytes"]:
            problems.append(f"{row['path']} has {now['bytes']} bytes, {row['bytes']} written")
        elif now["sha256"] != row["sha256"]:
            problems.append(f"{row['path']} has changed (SHA-256 differs from the one written)")
    if problems:
        raise ValueError(f"{folder} is not as written: " + "; ".join(problems) + ".")
    return len(listed)


def commit(staging: Path, out: Path) -> None:
    """Give ``staging`` the name ``out``.

    A previous ``out`` is moved aside first and removed after, so at every moment one complete
    result folder exists (between the two renames, under the hidden name ``.<out>.replaced-*``).
    """
    out = out.absolute()
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an empty folder the user made for the results
    if out.exists():
        aside = out.with_name(f".{out.name}.replaced-{uuid.uuid4().hex[:8]}")
        os.rename(out, aside)
        os.rename(staging, out)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.rename(staging, out)


class ResultWriter:
    """The result folder of one run, as a context manager.

    ``open()`` checks the folder (:func:`check_result_folder`) and returns the staging
    folder to write into; ``commit(summary)`` writes ``summary.json`` last (with the
    :func:`manifest` of everything else as ``output_files``) and moves the results
    into place. Leaving the ``with`` block by an exception (a failure, Ctrl-C, or a
    SIGTERM turned into ``SystemExit``) before the commit removes the staging folder.
    """

    def __init__(self, out, overwrite: bool = False):
        self.out = Path(out)
        self.overwrite = bool(overwrite)
        self.staging: Path | None = None

    def open(self) -> Path:
        check_result_folder(self.out, self.overwrite)
        self.staging = staging_folder(self.out)
        return self.staging

    def final_path(self, path) -> Path:
        """Where a file written under the staging folder will be after the commit."""
        assert self.staging is not None, "open() first"
        return self.out / Path(path).relative_to(self.staging)

    def commit(self, summary: dict, default=None) -> None:
        import json

        assert self.staging is not None, "open() first"
        summary["output_files"] = manifest(self.staging)
        (self.staging / SUMMARY).write_text(json.dumps(summary, indent=2, default=default))
        commit(self.staging, self.out)
        self.staging = None

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc) -> None:
        if self.staging is not None:
            discard(self.staging)
            self.staging = None
