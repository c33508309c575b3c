#!/usr/bin/env python3
"""PyTorch peers of the IRN random walk (spec §4.7), for `cargo bench --bench randomwalk`.

Reads the transition operator P (row, column, value triplets over the grid's row-major pixel
ids, self-loops included, rows summing to 1) and the score maps X (k x n) that the Rust bench
wrote, and times one walk per call:

  csr    P as a torch CSR tensor, then 2**exp_times sparse products X <- X P^T (what a sparse
         PyTorch port of IRN's walk does);
  dense  IRN's own route: P^T as a dense n x n float32 matrix, squared exp_times times, then
         one product (feasible only on small grids).

Both start from the triplets, so the path-affinity computation (edge -> A^beta) is not in the
peer's time while it is in ours. Prints `<median seconds> <max |result - ours|>`.
"""

import argparse
import os
import time

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["csr", "dense"])
    ap.add_argument("dir")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--exp-times", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = torch.from_numpy(np.fromfile(os.path.join(a.dir, "rows.u32"), dtype=np.uint32).astype(np.int64))
    cols = torch.from_numpy(np.fromfile(os.path.join(a.dir, "cols.u32"), dtype=np.uint32).astype(np.int64))
    vals = torch.from_numpy(np.fromfile(os.path.join(a.dir, "vals.f32"), dtype=np.float32))
    x = torch.from_numpy(np.fromfile(os.path.join(a.dir, "x.f32"), dtype=np.float32)).view(a.k, a.n)
    ours = np.fromfile(os.path.join(a.dir, "ours.f32"), dtype=np.float32).reshape(a.k, a.n)

    def csr():
        p = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (a.n, a.n)).coalesce().to_sparse_csr()
        y = x.t().contiguous()
        for _ in range(2**a.exp_times):
            y = p @ y
        return y.t()

    def dense():
        t = torch.zeros(a.n, a.n)
        t.index_put_((cols, rows), vals, accumulate=True)  # t = P^T: x_new = x t
        for _ in range(a.exp_times):
            t = t @ t
        return x @ t

    f = csr if a.mode == "csr" else dense
    times, out = [], None
    for _ in range(a.reps):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    times.sort()
    diff = float(np.abs(out.numpy() - ours).max())
    print(times[len(times) // 2], diff)


if __name__ == "__main__":
    main()
