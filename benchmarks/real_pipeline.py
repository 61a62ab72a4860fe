"""The reconstruct command with its defaults on a real-size series: time and memory.

Writes a realistic FIB-lamella series (``simulate_lamella_series``: 16 tilts of
256 x 256 x 2048 by default, about 14 counts per pixel, five listed elements under an
unlisted Pt/Ga cap, stray lines, a faulty ADF, drift, Bruker's axis names), one
``.hspy`` file per tilt, then runs in fresh processes, each measured alone (wall time
and peak resident memory, ``ru_maxrss`` of the child):

- ``cli``: ``python -m hyperspy_hebt reconstruct`` with no option but the files, the
  angles from the names and ``--elements`` (method, alpha, iterations "auto"; no
  binning), through saving and figures;
- ``cli --thickness``: the same with the lamella's thickness (a support, and less
  padding);
- ``reference``: a plain script on the same files, as a user would write it: load,
  integrate 1-FWHM windows, ``reconstruct_sirt(iterations=50)``, quantify, save the
  volumes as ``.zspy`` (no automatic choice, no survey, no figures);
- with ``--absorption``, also that script with ``absorption_correction=True`` (density
  3.0 g/cm^3, the detector from the files' metadata; issue 15 allows 3x the reference);
- with ``--uncertainty N``, also that script with ``uncertainty=N`` (the per-voxel
  variance of every volume and fraction by an N-replicate bootstrap; about N + 1 times
  the reconstruction's work, in bounded memory).

Targets (issue 12): the CLI under 2 minutes wall on 2 cores and under 1.5 GB peak RSS.
Figures as measured, and the ratio to the reference of the same run.

Run:  python benchmarks/real_pipeline.py [--size 256] [--slices 256] [--tilts 16]
      [--channels 2048] [--folder /tmp/hebt_real_pipeline] [--keep] [--absorption]
      [--uncertainty N] [--skip-cli]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ELEMENTS = ["O", "Mg", "Si", "S", "Fe"]

REFERENCE_TEMPLATE = """
import sys, time
from pathlib import Path
from hyperspy_hebt import load_tilt_series, compute_together
folder, out = Path(sys.argv[1]), Path(sys.argv[2])
series, adf = load_tilt_series(str(folder / "tilt_*.hspy"), tilt_from="filename",
                               adf_paths=str(folder / "adf_tilt_*.hspy"),
                               elements=%r)
rec = series.reconstruct_sirt(iterations=50, integration_windows=1.0, gaussian_sigma=0.8,
                              %s)
fractions = series.quantify_cross_section(rec)
results = compute_together(rec + fractions)
out.mkdir(parents=True, exist_ok=True)
for signal in results:
    signal.save(out / (signal.metadata.General.title.replace(" ", "_") + ".zspy"),
                overwrite=True)
"""


def reference_script(extra: str = "") -> str:
    """The plain script, with ``extra`` keywords for ``reconstruct_sirt``."""
    return REFERENCE_TEMPLATE % (ELEMENTS, extra)  # noqa: UP031 (no f-string braces)


MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:])
print(f"{time.perf_counter() - start} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}",
      file=sys.stderr)
sys.exit(done.returncode)
"""


def child(command: list[str]) -> dict:
    """Run ``command`` under a small measuring process.

    Its ``ru_maxrss`` of children is the command's own (this process's would include a forked copy
    of this one, which holds the generator's arrays).
    """
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True,
                          text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{command[:4]} failed with {done.returncode}")
    seconds, peak_kb = done.stderr.strip().splitlines()[-1].split()
    return {"seconds": float(seconds), "peak_rss_gb": int(peak_kb) * 1024 / 1e9,
            "stdout": done.stdout}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="scan pixels along x")
    parser.add_argument("--slices", type=int, default=256, help="scan pixels along y")
    parser.add_argument("--tilts", type=int, default=16)
    parser.add_argument("--channels", type=int, default=2048)
    parser.add_argument("--folder", default="/tmp/hebt_real_pipeline")
    parser.add_argument("--keep", action="store_true", help="keep the series if present")
    parser.add_argument("--absorption", action="store_true",
                        help="also time the reference script with absorption_correction")
    parser.add_argument("--uncertainty", type=int, default=0, metavar="N",
                        help="also time the reference script with uncertainty=N")
    parser.add_argument("--skip-cli", action="store_true",
                        help="time only the plain script (and --absorption), not the CLI")
    args = parser.parse_args()
    folder = Path(args.folder)
    data = folder / "series"
    if not (args.keep and data.is_dir()):
        shutil.rmtree(folder, ignore_errors=True)
        from hyperspy_hebt.simulation import simulate_lamella_series

        start = time.perf_counter()
        written = simulate_lamella_series(
            data, n_x=args.size, n_slices=args.slices,
            tilt_angles_deg=np.linspace(-60, 60, args.tilts),
            energy_channels=args.channels, pixel_size_nm=2.0 * 256 / args.size,
            counts_dtype=np.uint8)
        print(f"wrote {args.tilts} x {args.slices} x {args.size} x {args.channels} "
              f"({written.mean_counts_per_pixel:.1f} counts per pixel) in "
              f"{time.perf_counter() - start:.0f} s")
    gigabytes = args.tilts * args.slices * args.size * args.channels * 4 / 1e9
    reference = child([sys.executable, "-c", reference_script(), str(data),
                       str(folder / "reference")])
    absorption = None
    if args.absorption:
        absorption = child([sys.executable, "-c",
                            reference_script("absorption_correction=True, density=3.0"),
                            str(data), str(folder / "absorption")])
    uncertainty = None
    if args.uncertainty:
        uncertainty = child([sys.executable, "-c",
                             reference_script(f"uncertainty={args.uncertainty}"),
                             str(data), str(folder / "uncertainty")])
    runs = [("plain script (SIRT n 50, save)", reference)]
    summary, cli = None, None
    if not args.skip_cli:
        command = [sys.executable, "-m", "hyperspy_hebt", "reconstruct",
                   str(data / "tilt_*.hspy"), "--adf", str(data / "adf_tilt_*.hspy"),
                   "--tilt-from", "filename", "--elements", *ELEMENTS, "--overwrite"]
        cli = child(command + ["--out", str(folder / "cli")])
        # The simulated lamella is a quarter of the field thick.
        thickness_nm = 0.25 * args.size * 2.0 * 256 / args.size
        thick = child(command + ["--thickness", f"{thickness_nm:g}",
                                 "--out", str(folder / "cli_thickness")])
        summary = json.loads((folder / "cli" / "summary.json").read_text())
        runs += [("CLI defaults (auto, survey, figures)", cli),
                 (f"CLI defaults + --thickness {thickness_nm:g}", thick)]
    if absorption is not None:
        runs.append(("plain script + absorption_correction (density 3.0)", absorption))
    if uncertainty is not None:
        runs.append((f"plain script + uncertainty={args.uncertainty}", uncertainty))
    print(f"\nseries {args.tilts} x {args.slices} x {args.size} x {args.channels} "
          f"({gigabytes:.1f} GB as float32); 2-core machine\n")
    print("| run | wall (s) | peak RSS (GB) | wall / reference |")
    print("|---|---|---|---|")
    for name, run in runs:
        print(f"| {name} | {run['seconds']:.0f} | {run['peak_rss_gb']:.2f} | "
              f"{run['seconds'] / reference['seconds']:.2f} |")
    if summary is not None and cli is not None:
        print(f"\nCLI chose: "
              f"{summary.get('automatic_choice', {}).get('chosen', summary['algorithm'])}"
              f"; padding {summary['padding_px']} px")
        print("CLI stages:")
        print("\n".join("  " + line for line in cli["stdout"].splitlines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
