# PyTorch CPU peer for the fusedce benchmark: times F.cross_entropy (forward) and forward+backward
# on the benchmark's own data, read from raw files, at each requested thread count.
# usage: python3 torch_ce.py LOGITS TARGETS ROWS VOCAB DTYPE THREADS[,THREADS…] TIME_S
#   LOGITS: raw little-endian bf16/f16 (uint16 bits) or f32; TARGETS: raw int32 (rows,)
# Prints one JSON object: {"torch": version, "results": [{op, threads, seconds, loss} | {op, skip}]}
import json
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

path, tpath, rows, vocab, dtype, threads, budget = sys.argv[1:8]
rows, vocab, budget = int(rows), int(vocab), float(budget)
if dtype == "f32":
    z = torch.from_numpy(np.fromfile(path, dtype=np.float32))
elif dtype == "f16":
    z = torch.from_numpy(np.fromfile(path, dtype=np.float16))
else:  # bf16: numpy has no bfloat16; reinterpret the bits
    z = torch.from_numpy(np.fromfile(path, dtype=np.int16)).view(torch.bfloat16)
z = z.reshape(rows, vocab).contiguous()
t = torch.from_numpy(np.fromfile(tpath, dtype=np.int32).astype(np.int64))


def median_seconds(fn):
    for _ in range(3):
        fn()
    samples, start = [], time.perf_counter()
    while len(samples) < 5 or (time.perf_counter() - start < budget and len(samples) < 1000):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def forward():
    with torch.no_grad():
        return F.cross_entropy(z, t)


zg = z.clone().requires_grad_(True)


def fwd_bwd():
    zg.grad = None
    loss = F.cross_entropy(zg, t)
    loss.backward()
    return loss


results = []
for n in [int(x) for x in threads.split(",")]:
    torch.set_num_threads(n)
    for op, fn in (("forward", forward), ("fwd+bwd", fwd_bwd)):
        try:
            loss = float(fn().float())
            results.append({"op": op, "threads": n, "seconds": median_seconds(fn), "loss": loss})
        except RuntimeError as e:  # e.g. an op without a kernel for this dtype on the CPU
            results.append({"op": op, "threads": n, "skip": str(e).splitlines()[0]})
print(json.dumps({"torch": torch.__version__, "results": results}))
