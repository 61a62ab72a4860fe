"""
On a cluster: ``dask.distributed``
==================================

The lazy results are ordinary dask graphs, so a ``dask.distributed`` client runs them
on its workers: here a ``LocalCluster`` of two worker processes on this machine, the
same code that runs on a cluster of many. Each block of slices is reconstructed by one
worker; the system matrix is built once per worker process and never travels.
"""

import time

import numpy as np
from dask.distributed import Client, LocalCluster

from hyperspy_hebt.simulation import core_shell_particle, simulate_acquisition

particle = core_shell_particle(32, n_slices=8, pixel_size_nm=3.0)
acquisition = simulate_acquisition(particle, ["Ag_La", "Au_Ma"],
                                   energy_axis_kev=(0.0, 0.02, 256))
series = acquisition.series
eager = series.reconstruct_sirt(iterations=50, integration_windows=1.0,
                                show_progressbar=False)
lazy = series.as_lazy().reconstruct_sirt(iterations=50, integration_windows=1.0,
                                         slices_per_block=2, show_progressbar=False)

# %%
# Two worker processes, one thread each; the graphs of both lines computed there.
if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        print(client)
        start = time.perf_counter()
        results = client.compute([r.data for r in lazy], sync=True)
        print(f"computed on the cluster in {time.perf_counter() - start:.1f} s")
    for line, on_cluster, here in zip(("Ag_La", "Au_Ma"), results, eager):
        print(line, "cluster - eager, largest difference:",
              float(np.abs(on_cluster - here.data).max()), "of", float(here.data.max()))
