"""How SIRT and HEBT costs grow with slices and image size, and with 1 or 2 workers.

Cost per iteration should be linear in the number of slices (they are independent
columns of one sparse product) and, per slice, proportional to the non-zeros of W:
2 N^2 per tilt for an N x N slice (each of N rays per tilt crosses N rows with two
interpolation weights), so N^2 at a fixed number of tilts and N^3 for a whole
N-slice volume (N^4 if the tilts grow with N). Workers: the same lazy reconstruction
on a ``dask.distributed.LocalCluster`` with 1 and 2 single-threaded worker processes
(numba limited to one thread in each), against the threaded scheduler with both
cores in one numba kernel.

Run:  python benchmarks/scaling.py [--iterations 10]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector, hebt, sirt

TILTS = np.linspace(-75, 75, 31)


def per_iteration_ms(function, iterations, repeats=2):
    function(1)  # warm up (compilation, projector cache)
    best = min(_timed(function, iterations) for _ in range(repeats))
    return 1e3 * best / iterations


def _timed(function, iterations):
    start = time.perf_counter()
    function(iterations)
    return time.perf_counter() - start


def kernels(size, slices, iterations):
    projector = get_projector(ParallelBeamGeometry(tuple(TILTS), size))
    rng = np.random.default_rng(0)
    eds = rng.random((2, slices, TILTS.size, size), dtype=np.float32)
    adf = eds.sum(axis=0)
    sirt_ms = per_iteration_ms(lambda n: sirt(projector, eds.reshape(-1, TILTS.size, size), n),
                               iterations)
    hebt_ms = per_iteration_ms(lambda n: hebt(projector, eds, adf, [1.0, 1.0], 0.8, n),
                               iterations)
    return sirt_ms, hebt_ms


def workers(iterations):
    import dask
    import distributed

    from hyperspy_hebt.simulation import core_shell_particle, simulate_acquisition

    # Line intensities are given directly: a coarse 16-channel energy axis keeps the
    # (unused) spectra small.
    particle = core_shell_particle(256, 64, pixel_size_nm=1.0)
    acquisition = simulate_acquisition(particle, ["Ag_La", "Au_Ma"],
                                       energy_axis_kev=(0.0, 0.2, 16))
    series = acquisition.series.as_lazy()
    intensities = [dask.array.from_array(m) for m in acquisition.line_intensities]
    rec = series.reconstruct_sirt(iterations=iterations, intensities=intensities,
                                  xray_lines=["Ag_La", "Au_Ma"], slices_per_block=16)
    arrays = [r.data for r in rec]
    def best_of_three(compute):
        compute()  # warm up: imports, compilation, the projector on every worker
        times = []
        for _ in range(3):
            start = time.perf_counter()
            compute()
            times.append(time.perf_counter() - start)
        return min(times)

    rows = [("threaded scheduler, numba on 2 threads",
             best_of_three(lambda: dask.compute(*arrays, scheduler="threads")))]
    # A spawned worker re-imports this script (and so numba) before the cluster's
    # ``env`` applies; only the inherited environment limits its numba threads.
    inherited = os.environ.get("NUMBA_NUM_THREADS")
    os.environ["NUMBA_NUM_THREADS"] = "1"
    try:
        for n_workers in (1, 2):
            with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                          processes=True, dashboard_address=None,
                                          env={"NUMBA_NUM_THREADS": "1"}) as cluster, \
                    distributed.Client(cluster) as client:
                threads = set(client.run(_numba_threads).values())
                if threads != {1}:
                    raise RuntimeError(f"workers run numba on {threads} threads, not 1")
                rows.append((f"LocalCluster, {n_workers} worker(s) x 1 thread (numba 1)",
                             best_of_three(lambda: client.compute(arrays, sync=True))))
    finally:
        if inherited is None:
            del os.environ["NUMBA_NUM_THREADS"]
        else:
            os.environ["NUMBA_NUM_THREADS"] = inherited
    return rows


def _numba_threads():
    import numba

    return numba.config.NUMBA_NUM_THREADS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    print(f"{TILTS.size} tilts, 2 lines, {args.iterations} iterations, best of 2; "
          f"{os.cpu_count()} cores")
    print()
    print("| N x N | slices | SIRT ms/iteration | per slice (ms) | HEBT ms/iteration | "
          "HEBT / SIRT |")
    print("|---|---|---|---|---|---|")
    for size, slices in [(256, s) for s in (16, 32, 64, 128, 256)] + [(128, 32), (512, 32)]:
        sirt_ms, hebt_ms = kernels(size, slices, args.iterations)
        print(f"| {size} | {slices} | {sirt_ms:.1f} | {sirt_ms / slices:.2f} | "
              f"{hebt_ms:.1f} | {hebt_ms / sirt_ms:.2f} |")
    print()
    print(f"| 64 slices of 256 x 256, 2 lines, lazy SIRT ({args.iterations * 5} iterations, "
          "8 blocks), best of 3 | seconds |")
    print("|---|---|")
    for name, seconds in workers(args.iterations * 5):
        print(f"| {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
