"""SIRT throughput: hyperspy_hebt vs astra-toolbox (CPU), etspy and scikit-image.

Times 100 SIRT iterations of 64 slices of 256 x 256 at 31 tilts (-75..75 deg)
with this package, and the same problem one slice at a time with astra's CPU
SIRT (``linear`` projector), etspy's ``TomoStack.reconstruct("SIRT",
cuda=False)`` and scikit-image's ``iradon_sart``. The slower tools run on fewer
slices (options below) and are reported per slice-iteration; each result's
relative L2 error against the phantom is printed next to its speed.

ML-EM and OS-EM (``tomography.mlem``) and Poisson + TV (``tomography.poisson_tv``) run on
the same slices and iterations: their cost per iteration against SIRT's is the "speed-up
of ours" column read the other way round (issue 16 allows Poisson + TV 2x).

Also prints two floors of our kernel. The memory-bandwidth floor: the bytes one
iteration must move from memory (both sparse matrices once, the dense blocks once or
twice) over the copy bandwidth measured in the same run. The cache-traffic floor: every
stored weight of a CSR x dense product moves one row of the dense block (a value per
slice) between the caches and the cores, read for the back projection's gather, read
and written for the forward projection's scatter, over the in-cache copy bandwidth of
every core measured in the same run. A kernel bound by the second is not helped by
reading less from memory.

Run:  python benchmarks/sirt_speed.py [--slices 64] [--size 256] [--iterations 100]
Needs: pip install astra-toolbox scikit-image etspy  (each is skipped if missing)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from hyperspy_hebt.simulation import core_shell_phantom, project_volume
from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector, sirt
from hyperspy_hebt.tomography.mlem import mlem
from hyperspy_hebt.tomography.poisson_tv import poisson_tv


def relative_error(estimate, truth):
    return float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))


def copy_bandwidth(n_bytes=512 * 2**20, repeats=5):
    """Bytes per second of a large array copy (read + write counted)."""
    src = np.ones(n_bytes // 4, np.float32)
    dst = np.empty_like(src)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * n_bytes / best


def cache_bandwidth(kib_per_thread=256, passes=4000):
    """Bytes per second of every thread copying its own L2-sized buffer (read + write)."""
    import numba

    @numba.njit(parallel=True)
    def copy_in_cache(src, dst, passes):
        # Back and forth, each pass reading what the last one wrote, so that the compiler
        # cannot fold the passes into one.
        for t in numba.prange(src.shape[0]):
            a, b = src[t], dst[t]
            for k in range(passes):
                if k % 2:
                    for i in range(a.shape[0]):
                        a[i] = b[i] + 1.0
                else:
                    for i in range(a.shape[0]):
                        b[i] = a[i] + 1.0

    threads = numba.get_num_threads()
    src = np.ones((threads, kib_per_thread * 256), np.float32)
    dst = np.empty_like(src)
    copy_in_cache(src, dst, 1)
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        copy_in_cache(src, dst, passes)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes * passes / best


def cache_bytes_per_iteration(projector, n_slices):
    """Dense rows moved between cache and cores by one iteration's two products."""
    nnz = projector.matrix.nnz
    return 4 * n_slices * nnz * 3  # back: read a row per weight; forward: read + write


def bytes_per_iteration(projector, n_slices):
    """Lower bound on the memory traffic of one fused SIRT iteration."""
    matrices = sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
                   for m in (projector.matrix, projector.matrix_t))
    g = projector.geometry
    # forward: read volume, read measured, write residual;
    # backward: read residual, read + write volume.
    dense = 4 * n_slices * (3 * g.n_pixels + 3 * g.n_rays)
    return matrices + dense


def time_ours(sinograms, tilts, iterations):
    geometry = ParallelBeamGeometry(tuple(tilts), sinograms.shape[2])
    start = time.perf_counter()
    projector = get_projector(geometry)
    build = time.perf_counter() - start
    sirt(projector, sinograms[:1], 1)  # compile / warm up
    start = time.perf_counter()
    volume = sirt(projector, sinograms, iterations)
    return time.perf_counter() - start, volume, projector, build


def astra_sirt(sinogram, tilts, iterations, sign):
    import astra

    n = sinogram.shape[1]
    vol_geom = astra.create_vol_geom(n, n)
    proj_geom = astra.create_proj_geom("parallel", 1.0, n, np.deg2rad(sign * tilts))
    proj_id = astra.create_projector("linear", proj_geom, vol_geom)
    sino_id = astra.data2d.create("-sino", proj_geom, sinogram)
    rec_id = astra.data2d.create("-vol", vol_geom, 0.0)
    cfg = astra.astra_dict("SIRT")
    cfg.update(ProjectorId=proj_id, ProjectionDataId=sino_id, ReconstructionDataId=rec_id,
               option={"MinConstraint": 0.0})
    alg = astra.algorithm.create(cfg)
    astra.algorithm.run(alg, iterations)
    rec = astra.data2d.get(rec_id)
    for free, ident in ((astra.algorithm.delete, alg), (astra.data2d.delete, sino_id),
                        (astra.data2d.delete, rec_id), (astra.projector.delete, proj_id)):
        free(ident)
    return rec


def best_orientation(run, truth):
    """astra/etspy/skimage angle and axis conventions differ from ours.

    Take the sign of the angles that gives the lower error on a short run.
    """
    return min((1.0, -1.0), key=lambda sign: relative_error(run(sign, 10), truth))


def time_astra(sinograms, truth, tilts, iterations, n_slices):
    sign = best_orientation(lambda sg, it: astra_sirt(sinograms[0], tilts, it, sg), truth[0])
    start = time.perf_counter()
    recs = [astra_sirt(s, tilts, iterations, sign) for s in sinograms[:n_slices]]
    return time.perf_counter() - start, np.stack(recs)


def time_etspy(sinograms, tilts, iterations, n_slices):
    import etspy.api as etspy

    def run(sign, its, count):
        stack = etspy.TomoStack(np.ascontiguousarray(sinograms[:count].transpose(1, 2, 0)),
                                tilts=sign * tilts)
        rec = stack.reconstruct("SIRT", iterations=its, constrain=True, thresh=0,
                                cuda=False, show_progressbar=False)
        return np.asarray(rec.data)

    return run


def time_skimage(sinograms, truth, tilts, iterations):
    from skimage.transform import iradon_sart

    def run(sign, its):
        image = None
        for _ in range(its):
            image = iradon_sart(sinograms[0].T.astype(float), theta=sign * tilts, image=image,
                                clip=(0.0, np.inf))
        return image

    sign = best_orientation(run, truth[0])
    start = time.perf_counter()
    rec = run(sign, iterations)
    return time.perf_counter() - start, rec[None]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--astra-slices", type=int, default=4)
    parser.add_argument("--etspy-slices", type=int, default=4)
    parser.add_argument("--skimage-iterations", type=int, default=10)
    args = parser.parse_args()

    tilts = np.linspace(-75, 75, 31)
    core, shell = core_shell_phantom(args.size, args.slices)
    truth = (0.2 * core + 0.8 * shell).astype(np.float32)
    sinograms = project_volume(truth, tilts, oversampling=2)
    print(f"{args.slices} slices of {args.size}x{args.size}, {tilts.size} tilts "
          f"(-75..75 deg), {args.iterations} iterations; cores: {os.cpu_count()}")

    rows = []
    seconds, volume, projector, build = time_ours(sinograms, tilts, args.iterations)
    ours_ms = 1e3 * seconds / (args.slices * args.iterations)
    rows.append(("hyperspy_hebt (batched numba CSR)", args.slices, args.iterations, ours_ms,
                 relative_error(volume, truth)))
    # Poisson reconstructions on the same projector (issue 16: their iterations against
    # SIRT's): ML-EM, and OS-EM whose iteration is a pass over every subset.
    for subsets in (1, 4):
        mlem(projector, sinograms[:1], 1, subsets)  # compile / warm up
        start = time.perf_counter()
        volume_em = mlem(projector, sinograms, args.iterations, subsets)
        rows.append((f"hyperspy_hebt {'ML-EM' if subsets == 1 else 'OS-EM, 4 subsets'}",
                     args.slices, args.iterations,
                     1e3 * (time.perf_counter() - start) / (args.slices * args.iterations),
                     relative_error(volume_em, truth)))
    poisson_tv(projector, sinograms[:1], 1, 0.03)  # compile / warm up
    start = time.perf_counter()
    volume_tv = poisson_tv(projector, sinograms, args.iterations, 0.03)
    rows.append(("hyperspy_hebt Poisson + TV (PDHG, weight 0.03)", args.slices,
                 args.iterations,
                 1e3 * (time.perf_counter() - start) / (args.slices * args.iterations),
                 relative_error(volume_tv, truth)))
    bandwidth = copy_bandwidth()
    floor_s = bytes_per_iteration(projector, args.slices) / bandwidth
    in_cache = cache_bandwidth()
    cache_floor_s = cache_bytes_per_iteration(projector, args.slices) / in_cache
    measured_s = seconds / args.iterations

    try:
        seconds, recs = time_astra(sinograms, truth, tilts, args.iterations, args.astra_slices)
        rows.append(("astra-toolbox CPU SIRT, one slice at a time", args.astra_slices,
                     args.iterations, 1e3 * seconds / (args.astra_slices * args.iterations),
                     relative_error(recs, truth[:args.astra_slices])))
    except ImportError:
        print("astra-toolbox not installed: skipped")

    try:
        run = time_etspy(sinograms, tilts, args.iterations, args.etspy_slices)
        sign = best_orientation(lambda sg, it: run(sg, it, 1)[0], truth[0])
        start = time.perf_counter()
        recs = run(sign, args.iterations, args.etspy_slices)
        seconds = time.perf_counter() - start
        rows.append(("etspy TomoStack.reconstruct('SIRT', cuda=False)", args.etspy_slices,
                     args.iterations, 1e3 * seconds / (args.etspy_slices * args.iterations),
                     relative_error(recs, truth[:args.etspy_slices])))
    except ImportError:
        print("etspy not installed: skipped")

    try:
        seconds, rec = time_skimage(sinograms, truth, tilts, args.skimage_iterations)
        rows.append(("scikit-image iradon_sart (SART)", 1, args.skimage_iterations,
                     1e3 * seconds / args.skimage_iterations, relative_error(rec, truth[:1])))
    except ImportError:
        print("scikit-image not installed: skipped")

    # Error of our SIRT on the same slices and iteration counts as each tool.
    print()
    print("| method | slices | iterations | ms per slice-iteration | speed-up of ours | "
          "rel. error vs phantom | ours, same slices and iterations |")
    print("|---|---|---|---|---|---|---|")
    for name, n_slices, iterations, ms, error in rows:
        ours_same = relative_error(
            sirt(projector, sinograms[:n_slices], iterations), truth[:n_slices]
        )
        print(f"| {name} | {n_slices} | {iterations} | {ms:.3f} | {ms / ours_ms:.1f}x | "
              f"{error:.4f} | {ours_same:.4f} |")
    print()
    print(f"system matrix: {projector.matrix.nnz} non-zeros, "
          f"W and W^T {projector.nbytes / 1e6:.0f} MB,"
          f" built in {build:.2f} s (once per geometry, cached)")
    print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s; one iteration must move "
          f"{bytes_per_iteration(projector, args.slices) / 1e6:.0f} MB -> floor "
          f"{1e3 * floor_s:.1f} ms; measured {1e3 * measured_s:.1f} ms "
          f"({measured_s / floor_s:.1f}x the floor)")
    print(f"in-cache copy bandwidth {in_cache / 1e9:.1f} GB/s (every core); the dense rows "
          f"one iteration moves between cache and cores, "
          f"{cache_bytes_per_iteration(projector, args.slices) / 1e9:.2f} GB -> floor "
          f"{1e3 * cache_floor_s:.1f} ms ({measured_s / cache_floor_s:.1f}x that floor)")


if __name__ == "__main__":
    main()
