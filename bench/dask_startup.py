"""Start-up cost of Dask workers for gdsl.distributed (docs/scaling.md): the first AIS call on a
fresh LocalCluster of two worker processes (each imports gdsl and loads or compiles the model),
the later calls, and the same AIS locally. Run with an empty GDSL_CACHE_DIR for the cold case.

    GDSL_CACHE_DIR=/tmp/empty python bench/dask_startup.py
"""
import time, numpy as np
from dask.distributed import LocalCluster, Client
import gdsl
from gdsl import distributed as gd
if __name__ == "__main__":
    m = gdsl.load("rbm", nh=64, seed=0)
    t = time.perf_counter(); cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None); c = Client(cluster); t_cluster = time.perf_counter() - t
    betas = np.linspace(0, 1, 200)
    for k in range(3):
        t = time.perf_counter(); gd.log_partition(m, c, runs=20, betas=betas, parts=2); print(f"AIS call {k+1}: {time.perf_counter()-t:.2f} s")
    t = time.perf_counter(); m.log_partition(method="ais", runs=20, betas=betas, workers=2); print(f"local: {time.perf_counter()-t:.2f} s")
    t = time.perf_counter(); m.log_partition(method="ais", runs=20, betas=betas, workers=2); print(f"local again: {time.perf_counter()-t:.2f} s")
    print(f"cluster start {t_cluster:.2f} s")
    c.close(); cluster.close()
