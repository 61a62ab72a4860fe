"""Command line: ``python -m hyperspy_hebt demo``.

The demo simulates an EDS spectrum-image tilt series and the simultaneous ADF
series of the built-in Ag-Au core-shell phantom (thin-film counts from the
physics module, real spectra, Poisson noise), reconstructs it by EDS-SIRT and by
HEBT and quantifies weight fractions through the same API a user calls, prints
compositions and quality figures, and writes figures and volumes to a folder.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

DESCRIPTION = """\
Quantitative 3D chemical imaging from EDS spectrum-image tilt series: each element
reconstructed by EDS-SIRT or by HAADF-EDS bimodal tomography (HEBT) and converted into
weight fractions.

Commands:
  demo         reconstruct the built-in phantom (no data needed)
  reconstruct  per-tilt files -> quantified volumes
  study        the paper's phantom study
  verify       check a result folder against its checksums

Run "python -m hyperspy_hebt COMMAND --help" for a command's options."""

EXIT_CODES = """\
exit codes:
  0    done
  1    verify: a file differs from the list in summary.json
  2    bad arguments or input (the message names it); nothing was written
  130  interrupted (Ctrl-C); 143: stopped by SIGTERM. The previous results stay."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help; descriptions and epilogs kept as written.

    Flags (on or off) and options without a default (None) show none.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.option_strings and action.nargs != 0 and action.default is not None
                and action.default is not argparse.SUPPRESS and "%(default)" not in text):
            text += " (default: %(default)s)"
        return text



def _demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metrics import structure_ssim
    from .simulation import (
        alloy_density,
        core_shell_phantom,
        project_volume,
        synthetic_adf_series,
        synthetic_tilt_series,
        thin_film_adf_counts,
        thin_film_line_counts,
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tilts = np.linspace(-75, 75, 31)
    lines = ["Ag_La", "Au_Ma"]
    core, shell = core_shell_phantom(args.size, args.slices)
    weight_fractions = {"Ag": 0.2 * core + 0.8 * shell, "Au": 0.8 * core + 0.2 * shell}
    counts = thin_film_line_counts(weight_fractions, lines, args.beam_energy,
                                   dose_electrons=args.dose, pixel_size_nm=args.pixel_size)
    adf_counts = thin_film_adf_counts(weight_fractions, args.beam_energy,
                                      dose_electrons=args.adf_dose, pixel_size_nm=args.pixel_size)
    print(f"Simulating {tilts.size} tilts of {args.size}x{args.slices} EDS spectrum images and "
          f"ADF images of an Ag-Au core-shell particle (core 80/20, shell 20/80 wt% Au/Ag), "
          f"{args.beam_energy:g} keV, {args.dose:.3g} (EDS) and {args.adf_dose:.3g} (ADF) "
          "electrons per pixel, Poisson noise...")
    series = synthetic_tilt_series(
        {line: project_volume(volume, tilts) for line, volume in counts.items()}, tilts,
        pixel_size_nm=args.pixel_size, energy_axis_kev=(0.0, 0.02, 512),
        beam_energy_kev=args.beam_energy, seed=args.seed)
    adf = synthetic_adf_series(project_volume(adf_counts, tilts), tilts,
                               pixel_size_nm=args.pixel_size, seed=args.seed + 1)
    print(series)
    # Fitted line intensities: Au M-beta sits 80 eV above Au M-alpha, inside any useful
    # integration window (+17 % Au counts at 2 FWHM), and the fit returns the counts of
    # each listed line, so the HEBT ratios come out as the simulation's (501, 550).
    fitted = series.fit_line_intensities(xray_lines=lines)
    common = dict(intensities=fitted, xray_lines=lines, gaussian_sigma=0.8,
                  show_progressbar=True)
    start = time.perf_counter()
    sirt_name = f"SIRT n={args.iterations}"
    hebt_name = f"HEBT alpha={args.alpha:g} n={args.hebt_iterations}"
    results = {
        sirt_name: series.reconstruct_sirt(iterations=args.iterations, **common),
        hebt_name: series.reconstruct_hebt(adf, alpha=args.alpha,
                                           iterations=args.hebt_iterations, **common),
    }
    fractions = {name: series.quantify_cross_section(rec) for name, rec in results.items()}
    print(f"Reconstruction and quantification: {time.perf_counter() - start:.2f} s")
    hebt_md = results[hebt_name][0].metadata.Reconstruction
    print("HEBT response ratios " + ", ".join(
        f"{line} {hebt_md.response_ratios[line]:.4g}" for line in lines)
          + f" (R^2 {hebt_md.response_ratio_r_squared:.3f})")
    density = alloy_density(weight_fractions)
    truth = core | shell
    for name, method_fractions in fractions.items():
        inside = sum(f.data for f in method_fractions) > 0
        dice = 2 * np.sum(inside & truth) / (inside.sum() + truth.sum())
        print(f"{name}: particle mask Dice {dice:.3f}")
        for rec, f, element in zip(results[name], method_fractions, weight_fractions):
            ssim = structure_ssim(rec.data, weight_fractions[element] * density)
            print(f"  {element}: weight fraction core {f.data[core & inside].mean():.3f} "
                  f"(true {weight_fractions[element][core][0]:.2f}), shell "
                  f"{f.data[shell & inside].mean():.3f} (true "
                  f"{weight_fractions[element][shell][0]:.2f}); structure SSIM of X {ssim:.3f}")
            tag = name.split()[0].lower()
            f.save(out / f"{element}_weight_fraction_{tag}.zspy", overwrite=True)
            rec.save(out / f"{rec.metadata.Sample.xray_lines[0]}_{tag}.zspy", overwrite=True)
    _demo_figure(plt, out, fitted, lines, fractions, weight_fractions, args.slices // 2)
    return 0


def _demo_figure(plt, out, measured, lines, fractions, weight_fractions, centre):
    names = list(fractions)
    fig, axes = plt.subplots(len(lines), 2 + len(names), figsize=(15, 3.4 * len(lines)))
    for row, (line, element) in enumerate(zip(lines, weight_fractions)):
        ax = axes[row, 0]
        shown = ax.imshow(measured[row].data[:, centre, :], cmap="inferno", aspect="auto")
        ax.set(title=f"{line} fitted counts, slice {centre}", xlabel="scan x",
               ylabel="tilt index")
        fig.colorbar(shown, ax=ax, shrink=0.8)
        for column, name in enumerate(names, start=1):
            ax = axes[row, column]
            shown = ax.imshow(fractions[name][row].data[centre], cmap="inferno", vmin=0, vmax=1)
            ax.set(title=f"{element} weight fraction, {name}", xlabel="x", ylabel="z")
            fig.colorbar(shown, ax=ax, shrink=0.8)
        profile = axes[row, -1]
        middle = fractions[names[0]][row].data.shape[1] // 2
        profile.plot(weight_fractions[element][centre, middle], "k--", label="phantom")
        for name in names:
            profile.plot(fractions[name][row].data[centre, middle], label=name)
        profile.set(title=f"{element} along x at z = 0", ylim=(-0.05, 1.05), xlabel="x pixel")
        profile.legend(fontsize=8)
    fig.tight_layout()
    figure = out / "demo.png"
    fig.savefig(figure, dpi=75)
    plt.close(fig)
    print(f"Wrote {figure} and the volumes (*.zspy) to {out}/")


def main(argv: list[str] | None = None) -> int:
    """Run the command-line tool on ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program's name: a command (``demo``, ``reconstruct``,
        ``study``, ``verify``) and its options.

    Returns
    -------
    int
        The exit code: 0 done, 1 failed while running, 2 bad arguments or input (nothing
        written), 3 finished but a check failed (see the CLI page).

    Examples
    --------
    The exit code says what happened (2: bad arguments or input, nothing written):

    >>> from hyperspy_hebt.cli import main
    >>> main(["reconstruct", "no_such_folder/tilt_*.bcf", "--elements", "Fe"])
    2
    """
    import warnings

    # HyperSpy 2.x warns about its own lazy-class imports when exspy loads.
    warnings.filterwarnings("ignore", message="Importing `Lazy")
    # rosettasciio writes .zspy through a zarr 2 store that zarr deprecates.
    warnings.filterwarnings("ignore", message="The NestedDirectoryStore is deprecated")
    from . import __version__

    parser = argparse.ArgumentParser(prog="python -m hyperspy_hebt", description=DESCRIPTION,
                                     epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text,
                                   description=textwrap.fill(description, 88),
                                   epilog=EXIT_CODES, formatter_class=_HelpFormatter)

    demo = command("demo", "reconstruct the built-in phantom",
                   "Simulate the paper's Ag-Au core-shell phantom (spectra and ADF, Poisson "
                   "noise), reconstruct it by EDS-SIRT and by HEBT, quantify, print the "
                   "compositions and write figures and volumes.")
    demo.add_argument("--out", default="demo_output", help="output folder")
    demo.add_argument("--size", type=int, default=96, help="pixels along x (and z)")
    demo.add_argument("--slices", type=int, default=16, help="slices along the rotation axis")
    demo.add_argument("--iterations", type=int, default=50, help="SIRT iterations")
    demo.add_argument("--hebt-iterations", type=int, default=200, help="HEBT iterations")
    demo.add_argument("--alpha", type=float, default=0.8, help="HEBT weight of the ADF term")
    demo.add_argument("--adf-dose", type=float, default=1e5,
                      help="ADF electrons per beam position (paper: 1e5)")
    demo.add_argument("--beam-energy", type=float, default=100.0, help="keV (paper: 100)")
    demo.add_argument("--dose", type=float, default=3.121e8,
                      help="electrons per beam position (paper: 0.5 s x 100 pA)")
    demo.add_argument("--pixel-size", type=float, default=1.5, help="nm (paper: 1.5)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the Poisson noise")
    study = command("study", "the paper's phantom study (Figs. 4, 6, 8, 13)",
                    "Calibrate and sweep SIRT iterations and HEBT's alpha on the paper's "
                    "phantom at its doses; write CSV tables and figures.")
    study.add_argument("--out", default="study_output", help="output folder")
    study.add_argument("--seed", type=int, default=0, help="seed of the Poisson noise")
    study.add_argument("--quick", action="store_true",
                       help="a coarse sweep (a few iterations and alphas), for a first look")
    rec = command("reconstruct", "per-tilt files -> quantified volumes",
                  "Load one file per tilt (Bruker .bcf, Velox .emd, HyperSpy .hspy/.zspy), "
                  "reconstruct every element (HEBT or SIRT, chosen by held-out tilts unless "
                  "told), quantify weight fractions and write volumes (.zspy, .tif and "
                  "tomviz .emd), figures and summary.json (with every file's SHA-256) into "
                  "one folder.")
    rec.add_argument("paths", help='glob pattern of per-tilt files, e.g. "data/*.bcf"')
    rec.add_argument("--adf", default=None, help="glob pattern of separate ADF files")
    rec.add_argument("--tilt-from", default="metadata", choices=("metadata", "filename"),
                     help="where each file's tilt angle comes from: Stage.tilt_alpha in its "
                          "metadata, or a number in its name (tilt_-40.bcf)")
    rec.add_argument("--tilt-angles", type=float, nargs="+", default=None,
                     help="one angle per file (degrees), in file-name order")
    rec.add_argument("--elements", nargs="+", default=None,
                     help="elements to reconstruct (replace the files' own list)")
    rec.add_argument("--lines", nargs="+", default=None,
                     help="X-ray lines, e.g. Fe_Ka (replace the files' own list)")
    rec.add_argument("--method", default="auto",
                     choices=("auto", "hebt", "sirt", "fused", "tv"),  # pipeline.METHODS
                     help="auto: HEBT's cross-validated choice, plain SIRT among its "
                          "candidates (SIRT when the files hold no ADF); fused: Poisson "
                          "counts + the ADF as a power of the lines + joint TV; tv: "
                          "Poisson counts + joint TV from the EDS alone")
    rec.add_argument("--alpha", type=_number_or_auto(float), default="auto",
                     help="HEBT weight of the ADF term, or auto (cross-validated)")
    rec.add_argument("--iterations", type=_number_or_auto(int), default="auto",
                     help="iterations, or auto (cross-validated; 300 for the fused model "
                          "and tv, whose solvers they converge)")
    rec.add_argument("--tv-weight", type=_number_or_auto(float), default="auto",
                     help="the total-variation weight of fused and tv, or auto "
                          "(cross-validated)")
    rec.add_argument("--gamma", type=_number_or_auto(float, "fit"), default=1.0,
                     help="the fused model's ADF power (1: linear, as HEBT), or fit (the "
                          "best R^2 of 1-2)")
    rec.add_argument("--adf-offset", action="store_true",
                     help="fit the ADF's offset (a dark level) with HEBT's ratios or the "
                          "fused model's ADF model and reconstruct the ADF less it")
    rec.add_argument("--region", action="append", default=None, dest="regions",
                     help='a region to tabulate the composition of, e.g. "Pt dominates" '
                          'or "not Pt dominates" (repeat for several)')
    rec.add_argument("--bin", type=int, default=1, help="spatial binning factor")
    rec.add_argument("--align", action="store_true", help="align the series on the ADF")
    rec.add_argument("--align-method", default="com", choices=("com", "xcorr"),
                     help="with --align: centre of mass, or phase correlation between "
                          "neighbouring tilts")
    rec.add_argument("--rotation", default=0.0, type=_number_or_auto(float),
                     help="tilt-axis rotation to undo (degrees) or 'auto' to estimate it")
    rec.add_argument("--axis-shift", default=0.0, type=_number_or_auto(float),
                     help="x shift (px) that centres the tilt axis, or 'auto' to estimate it "
                          "(use with --align-method xcorr)")
    rec.add_argument("--register", action="store_true", help="register the ADF on the EDS")
    rec.add_argument("--normalise", action="store_true", help="equal counts per tilt")
    rec.add_argument("--gaussian-sigma", type=_number_or_auto(float), default="auto",
                     metavar="PX",
                     help="Gaussian filter of the line maps along the slices and the scan, "
                          "in pixels (0: none; auto: 0.8 for SIRT and HEBT, none for the "
                          "fused model)")
    rec.add_argument("--fit-lines", action="store_true",
                     help="line intensities by fitting every spectrum (overlapping lines) "
                          "instead of 1-FWHM windows")
    rec.add_argument("--padding", default="auto", type=_number_or_auto(int),
                     help='grid columns added on each side of the scan, or "auto" (objects '
                          'wider than the field, e.g. lamellae)')
    rec.add_argument("--thickness", type=float, default=None, metavar="NM",
                     help="specimen (lamella) thickness in nm: the reconstruction is held "
                          "within it (default: the whole slab, as deep as the scan is wide)")
    rec.add_argument("--absorption", action="store_true",
                     help="correct the X-ray lines' absorption in 3D (with automatic "
                          "settings, the choice is made uncorrected, then rerun corrected)")
    rec.add_argument("--absorption-exact", action="store_true",
                     help="with --absorption: the composition passes on the "
                          "reconstruction's own grid, not a 2x coarser one (slower; checks "
                          "the shortcut)")
    rec.add_argument("--density", type=float, default=None, metavar="G_CM3",
                     help="specimen density in g/cm^3 for --absorption (default: "
                          "estimated from the composition, with a warning)")
    rec.add_argument("--detector", type=float, nargs=2, action="append", default=None,
                     dest="detectors", metavar=("AZIMUTH", "ELEVATION"),
                     help="an EDS detector's azimuth and elevation in degrees for "
                          "--absorption (repeat for several; default: the files' metadata)")
    rec.add_argument("--uncertainty", type=int, default=0, metavar="N",
                     help="per-voxel uncertainty from N bootstrap replicates (20 or more; "
                          "about N+1 times the reconstruction time): variances "
                          "saved with every volume and fraction map, voxel_uncertainty in "
                          "the composition table")
    rec.add_argument("--backend", default="cpu", choices=("cpu", "cupy", "auto"),
                     help='where the reconstructions run: "cupy" needs CuPy and a CUDA GPU, '
                          '"auto" takes one when present')
    rec.add_argument("--formats", nargs="+", default=["zspy", "tif", "emd"],
                     choices=("zspy", "tif", "emd"), metavar="FORMAT",  # pipeline.VOLUME_FORMATS
                     help="volume files to write: zspy (HyperSpy, all metadata), tif "
                          "(calibrated float32 stacks), emd (tomviz: one file of the lines, "
                          "one of the fractions); each holds every volume again")
    rec.add_argument("--out", default="results",
                     help="result folder: written whole at the end (a hidden sibling is "
                          "renamed into place); refused if it holds anything else")
    rec.add_argument("--overwrite", action="store_true",
                     help="replace the previous run's results in --out (whole)")
    rec.add_argument("--no-verify-checksums", action="store_false", dest="verify_checksums",
                     help="do not check the files against the .sha256 files beside them")
    loudness = rec.add_mutually_exclusive_group()
    loudness.add_argument("--quiet", action="store_true",
                          help="print no stages and no progress bar (errors still; the "
                               "run's warnings are in summary.json)")
    loudness.add_argument("--verbose", action="store_true",
                          help="also print the package's warnings as they happen (stderr) "
                               "and the progress bar when not on a terminal (a log file)")
    verify = command("verify", "check a result folder against the SHA-256 list in its "
                     "summary.json", "Check every file of a result folder against the size "
                     "and SHA-256 that summary.json lists; name any file changed, cut short, "
                     "lost or added.")
    verify.add_argument("folder", help="a folder written by the reconstruct command")
    args = parser.parse_args(argv)
    if args.command == "verify":
        return _verify(args)
    if args.command == "study":
        return _study(args)
    if args.command == "reconstruct":
        return _reconstruct(args)
    return _demo(args)


def _number_or_auto(kind, word: str = "auto"):
    """Argparse type: a number of ``kind`` or the word ``word`` ("auto", or "fit")."""
    def parse(text: str):
        if text == word:
            return text
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'} or '{word}', got "
                f"{text!r}") from None
    parse.__name__ = f"{kind.__name__} or {word}"
    return parse


def _reconstruct(args: argparse.Namespace) -> int:
    from .absorption_correction import AbsorptionNotConverged
    from .physics import DataUnavailableError
    from .pipeline import reconstruct_files

    if not args.absorption and (args.density is not None or args.detectors is not None
                                or args.absorption_exact):
        print("python -m hyperspy_hebt reconstruct: error: --density, --detector and "
              "--absorption-exact are for --absorption (the 3D absorption correction): add "
              "it, or leave them out.", file=sys.stderr)
        return 2
    package_log = logging.getLogger("hyperspy_hebt")
    handler = None
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        package_log.addHandler(handler)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a job scheduler, kill) unwinds like Ctrl-C, so the unfinished
        # results are removed and the previous ones stay as they were.
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        reconstruct_files(
            args.paths, args.out, elements=args.elements, xray_lines=args.lines,
            method=args.method, alpha=args.alpha, iterations=args.iterations,
            bin_factor=args.bin, align=args.align, align_method=args.align_method,
            rotation_deg=args.rotation, axis_shift_px=args.axis_shift,
            register=args.register, normalise=args.normalise,
            gaussian_sigma=args.gaussian_sigma, tilt_angles=args.tilt_angles,
            tilt_from=args.tilt_from, adf_paths=args.adf, padding_px=args.padding,
            fit_lines=args.fit_lines, backend=args.backend, regions=args.regions,
            thickness_nm=args.thickness,
            absorption_correction=("exact" if args.absorption and args.absorption_exact
                                   else args.absorption),
            density=args.density,
            detectors=None if args.detectors is None else [tuple(d) for d in args.detectors],
            overwrite=args.overwrite, verify_checksums=args.verify_checksums,
            uncertainty=args.uncertainty, tv_weight=args.tv_weight, gamma=args.gamma,
            adf_offset=args.adf_offset, formats=args.formats,
            progress=(lambda line: None) if args.quiet else print,
            show_progressbar=False if args.quiet else True if args.verbose else None)
    except (ValueError, TypeError, FileNotFoundError, DataUnavailableError,
            AbsorptionNotConverged) as error:
        # The user's input or files: a message, not a traceback.
        print(f"python -m hyperspy_hebt reconstruct: error: {error}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if handler is not None:
            package_log.removeHandler(handler)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ._outputs import verify_results

    try:
        count = verify_results(args.folder)
    except ValueError as error:
        print(f"python -m hyperspy_hebt verify: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.folder}: {count} files as written (size and SHA-256).")
    return 0


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _study(args: argparse.Namespace) -> int:
    from .study import run_paper_study

    sweep: dict[str, Any] = {}
    if args.quick:
        sweep = dict(sirt_iterations=(5, 20, 50, 200), alphas=(0.0, 0.4, 0.6, 0.8, 0.9),
                     hebt_iterations=(200,))
    start = time.perf_counter()
    result = run_paper_study(args.out, seed=args.seed, **sweep)
    print(f"{len(result.rows)} rows in {time.perf_counter() - start:.0f} s; wrote "
          + ", ".join(str(f) for f in result.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
