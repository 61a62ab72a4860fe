"""Out-of-core pipeline: peak memory and time on a series larger than it needs.

Writes a synthetic 16 x 256 x 256 x 2048 uint8 spectrum-image tilt series (2.1 GB as
uint8, 8.6 GB as float32) and its ADF series to .zspy, chunk by chunk, then runs
the lazy pipeline in a fresh process: load -> line intensities -> SIRT and HEBT ->
quantification -> volumes saved as .zspy. Each phase runs in its own process so
its peak resident memory (``ru_maxrss``) is its own. Target: peak RSS of the
pipeline under 25 % of the dataset's size as float32.

Run:  python benchmarks/out_of_core.py [--tilts 16] [--size 256] [--channels 2048]
      [--folder /tmp/hebt_out_of_core] [--iterations 50] [--fit-lines]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LINES = ["Ag_La", "Au_Ma"]


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB


def write(args):
    from hyperspy_hebt.simulation import (
        core_shell_particle,
        project_volume,
        synthetic_adf_series,
        synthetic_tilt_series,
        thin_film_adf_counts,
        thin_film_line_counts,
    )

    start = time.perf_counter()
    tilts = np.linspace(-70, 70, args.tilts)
    particle = core_shell_particle(args.size, args.size, pixel_size_nm=1.0)
    # ~10 counts per pixel and line through the particle: sparse, as real maps are.
    counts = thin_film_line_counts(particle.weight_fractions, LINES, 200.0,
                                   dose_electrons=3e6, solid_angle_sr=0.7,
                                   pixel_size_nm=1.0)
    sinograms = {line: project_volume(volume.astype(np.float32), tilts)
                 for line, volume in counts.items()}
    series = synthetic_tilt_series(sinograms, tilts, pixel_size_nm=1.0,
                                   energy_axis_kev=(0.0, 0.01, args.channels),
                                   background_counts=0.002, counts_dtype=np.uint8, lazy=True)
    adf = synthetic_adf_series(
        project_volume(thin_film_adf_counts(particle.weight_fractions, 200.0,
                                            pixel_size_nm=1.0).astype(np.float32), tilts),
        tilts, pixel_size_nm=1.0)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    series.save(folder / "series.zspy", overwrite=True,
                chunks=(1, 64, args.size, args.channels))
    adf.save(folder / "adf.zspy", overwrite=True)
    return {"phase": "write", "seconds": time.perf_counter() - start,
            "peak_rss_bytes": peak_rss_bytes(), "shape": list(series.data.shape)}


def run(args):
    import hyperspy.api as hs

    from hyperspy_hebt import compute_together

    folder = Path(args.folder)
    timings = {}
    start = time.perf_counter()
    series = hs.load(folder / "series.zspy", lazy=True)
    adf = hs.load(folder / "adf.zspy", lazy=True)
    common = {"iterations": args.iterations, "gaussian_sigma": 0.8}
    if args.fit_lines:
        # One pass over the spectra for the fit and its check; the maps it returns are
        # in memory, so nothing below reads the spectra again.
        common["intensities"] = series.fit_line_intensities(xray_lines=LINES)
        common["xray_lines"] = LINES
    sirt = series.reconstruct_sirt(**common)
    # Without the fit both calls read the spectra once: SIRT for its padding check, HEBT
    # for its ratio fit; the graphs they return hold the line maps.
    hebt = series.reconstruct_hebt(adf, alpha=0.8, **common)
    timings["call_s"] = time.perf_counter() - start
    fractions = series.quantify_cross_section(sirt) + series.quantify_cross_section(hebt)
    outputs = compute_together(sirt + hebt + fractions)
    timings["compute_s"] = time.perf_counter() - start - timings["call_s"]
    for signal in outputs:
        name = signal.metadata.General.title.replace(" ", "_").replace("(", "").replace(")", "")
        signal.save(folder / f"{name}.zspy", overwrite=True)
    timings["total_s"] = time.perf_counter() - start
    inside = (outputs[-2].data + outputs[-1].data) > 0
    return {"phase": "run", **timings, "peak_rss_bytes": peak_rss_bytes(),
            "dataset_uint8_bytes": int(np.prod(series.data.shape)),
            "hebt_r_squared": hebt[0].metadata.Reconstruction.response_ratio_r_squared,
            "particle_voxels": int(inside.sum())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tilts", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--channels", type=int, default=2048)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--folder", default="/tmp/hebt_out_of_core")
    parser.add_argument("--fit-lines", action="store_true",
                        help="line intensities from fit_line_intensities, not windows")
    parser.add_argument("--phase", choices=("write", "run"), default=None,
                        help=argparse.SUPPRESS)  # used by the child processes
    args = parser.parse_args()
    if args.phase:
        result = write(args) if args.phase == "write" else run(args)
        print(json.dumps(result))
        return
    results = {}
    for phase in ("write", "run"):
        command = [sys.executable, __file__, "--phase", phase, "--tilts", str(args.tilts),
                   "--size", str(args.size), "--channels", str(args.channels),
                   "--iterations", str(args.iterations), "--folder", args.folder]
        command += ["--fit-lines"] if args.fit_lines else []
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[phase] = json.loads(output.strip().splitlines()[-1])
    run_result = results["run"]
    float32_bytes = 4 * run_result["dataset_uint8_bytes"]
    print(f"dataset {args.tilts} x {args.size} x {args.size} x {args.channels}: "
          f"{run_result['dataset_uint8_bytes'] / 1e9:.2f} GB uint8, "
          f"{float32_bytes / 1e9:.2f} GB float32")
    print()
    print("| phase | wall time (s) | peak RSS (GB) | peak RSS / dataset as float32 |")
    print("|---|---|---|---|")
    for phase, result in results.items():
        seconds = result.get("total_s", result.get("seconds"))
        print(f"| {phase} | {seconds:.0f} | {result['peak_rss_bytes'] / 1e9:.2f} | "
              f"{result['peak_rss_bytes'] / float32_bytes:.1%} |")
    print()
    calls = ("line fit and its check, one pass over the spectra" if args.fit_lines else
             "padding check and ratio fit, one pass over the spectra each")
    print(f"run: the calls ({calls}) {run_result['call_s']:.0f} s, "
          f"SIRT + HEBT + quantification {run_result['compute_s']:.0f} s; HEBT R^2 "
          f"{run_result['hebt_r_squared']:.3f}; particle voxels {run_result['particle_voxels']}")


if __name__ == "__main__":
    main()
