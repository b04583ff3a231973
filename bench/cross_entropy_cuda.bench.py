#!/usr/bin/env python3
"""GPU benchmark: fusedce's CUDA kernels against PyTorch eager F.cross_entropy and torch.compile,
on the very same device buffers (fusedce is called through its C API, cuda/fusedce_cuda.h, with
ctypes on torch tensors' data_ptr()).

Per shape (bf16 logits unless --dtype): the machine's ceilings measured in the same run (a
device-to-device copy, counting bytes read + written; a read-only streaming kernel), then
  fusedce  fwd        reads z, writes loss/lse              bytes = |z|
  fusedce  bwd        reads z (+lse), writes grad           bytes = |z| + |grad|
  fusedce  fused      fwd+bwd in one call                   bytes = |z| + |grad|
  torch eager fwd, fwd+bwd;  torch.compile fwd+bwd (same function, compiled per shape)
timed with CUDA events after warm-up, the median of many runs. Every fusedce loss is checked
against a float64 reference (chunked over rows) and a sample of gradient rows likewise.

  python3 bench/cross_entropy_cuda.bench.py [--lib PATH] [--quick] [--no-compile] [--json OUT]
Prints a Markdown table; --json writes the raw numbers (device, date, git SHA, versions).
"""
import argparse
import ctypes
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("fusedce GPU bench: needs python3 with PyTorch (a CUDA build) on a machine with a GPU")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Args(ctypes.Structure):
    _fields_ = [
        ("logits", ctypes.c_void_p), ("dtype", ctypes.c_int), ("rows", ctypes.c_int64), ("vocab", ctypes.c_int64),
        ("targets", ctypes.c_void_p), ("ignore_index", ctypes.c_int32), ("reduction", ctypes.c_int),
        ("losses", ctypes.c_void_p), ("lse", ctypes.c_void_p), ("grad", ctypes.c_void_p), ("grad_dtype", ctypes.c_int),
        ("grad_output", ctypes.c_double), ("row_grad", ctypes.c_void_p), ("stream", ctypes.c_void_p),
        ("device_loss", ctypes.c_void_p), ("device", ctypes.c_int), ("losses64", ctypes.c_void_p),
    ]


DT = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


class FusedCE:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.fce_cuda_forward.argtypes = [ctypes.POINTER(Args), ctypes.POINTER(ctypes.c_double),
                                              ctypes.POINTER(ctypes.c_int64), ctypes.c_char_p, ctypes.c_size_t]
        self.lib.fce_cuda_backward.argtypes = [ctypes.POINTER(Args), ctypes.POINTER(ctypes.c_int64), ctypes.c_char_p,
                                               ctypes.c_size_t]
        self.lib.fce_cuda_read.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p,
                                           ctypes.c_size_t]
        self.err = ctypes.create_string_buffer(512)

    def args(self, z, t, losses, lse, grad=None, reduction=0):
        a = Args()
        a.logits, a.dtype, a.rows, a.vocab = z.data_ptr(), DT[z.dtype], z.shape[0], z.shape[1]
        a.targets, a.ignore_index, a.reduction = t.data_ptr(), -100, reduction
        a.losses, a.lse = losses.data_ptr(), lse.data_ptr()
        a.grad = grad.data_ptr() if grad is not None else None
        a.grad_dtype = DT[grad.dtype] if grad is not None else 0
        a.grad_output, a.row_grad = 1.0, None
        a.stream = torch.cuda.current_stream().cuda_stream
        a.device_loss, a.device = None, torch.cuda.current_device()
        return a

    def forward(self, a):
        s, c = ctypes.c_double(), ctypes.c_int64()
        if self.lib.fce_cuda_forward(ctypes.byref(a), ctypes.byref(s), ctypes.byref(c), self.err, 512):
            raise RuntimeError(self.err.value.decode())
        return s.value, c.value

    def backward(self, a):
        c = ctypes.c_int64()
        if self.lib.fce_cuda_backward(ctypes.byref(a), ctypes.byref(c), self.err, 512):
            raise RuntimeError(self.err.value.decode())

    def read(self, x):
        if self.lib.fce_cuda_read(x.data_ptr(), x.numel() * x.element_size(),
                                  ctypes.c_void_p(torch.cuda.current_stream().cuda_stream), self.err, 512):
            raise RuntimeError(self.err.value.decode())


def time_ms(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return statistics.median(out), min(out), max(out)


def ref_loss64(z, t, chunk=512):
    """Σ loss over counted rows and the count, float64, in row chunks."""
    s, n = 0.0, 0
    for i in range(0, z.shape[0], chunk):
        zz, tt = z[i:i + chunk].double(), t[i:i + chunk]
        s += F.cross_entropy(zz, tt, ignore_index=-100, reduction="sum").item()
        n += int((tt != -100).sum().item())
    return s, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=os.environ.get("FUSEDCE_CUDA_LIB", os.path.join(ROOT, "cuda", "build", "Release", "libfusedce_cuda.so")))
    ap.add_argument("--out", help="folder for cuda-<device>-<date>.json and .md")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-torch", action="store_true", help="time fusedce only (tuning runs)")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    ap.add_argument("--json")
    ap.add_argument("--shapes", help="comma list of ROWSxVOCAB")
    o = ap.parse_args()
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[o.dtype]
    esz = torch.tensor([], dtype=dtype).element_size()
    if not torch.cuda.is_available():
        sys.exit("fusedce GPU bench: PyTorch sees no CUDA device")
    if not os.path.exists(o.lib):
        sys.exit(f"fusedce GPU bench: {o.lib} not found; build it with npm run build:cuda (or pass --lib)")
    fce = FusedCE(o.lib)
    dev = torch.cuda.get_device_properties(0)
    shapes = [(16384, 131072), (8192, 128256), (4096, 262144), (32768, 32000), (1, 128256)]
    if o.quick:
        shapes = [(4096, 128256), (1, 128256)]
    if o.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in o.shapes.split(",")]
    sha = os.environ.get("FUSEDCE_GIT_SHA", "")  # where the tree was copied without its git metadata
    if not sha:
        try:
            sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except Exception:
            sha = ""
    meta = {"device": dev.name, "sms": dev.multi_processor_count, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "git": sha, "torch": torch.__version__, "cuda": torch.version.cuda,
            "dtype": o.dtype}
    print(f"# {dev.name} ({dev.multi_processor_count} SMs), torch {torch.__version__}, git {meta['git']}, {meta['date']}", flush=True)

    # ceilings: a 4 GiB device copy (read + write) and a read-only pass
    big = torch.empty(2 << 30, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(big)
    for _ in range(100):  # about half a second of copies: clocks up before anything is timed
        dst.copy_(big)
    ms, _, _ = time_ms(lambda: dst.copy_(big), 20)
    copy_gbs = 2 * big.numel() / ms / 1e6
    ms, _, _ = time_ms(lambda: fce.read(big), 20)
    read_gbs = big.numel() / ms / 1e6
    del big, dst
    torch.cuda.empty_cache()
    print(f"ceilings: copy {copy_gbs:.0f} GB/s (read+write), read-only {read_gbs:.0f} GB/s", flush=True)
    meta.update(copy_gbs=copy_gbs, read_gbs=read_gbs)

    results = []
    for rows, V in shapes:
        g = torch.Generator(device="cuda").manual_seed(rows * 7 + V)
        z = (torch.randn(rows, V, device="cuda", generator=g) * 2).to(dtype)
        t = torch.randint(0, V, (rows,), device="cuda", generator=g, dtype=torch.int64)
        t[torch.rand(rows, device="cuda", generator=g) < 0.05] = -100
        t32 = t.to(torch.int32)
        losses = torch.empty(rows, device="cuda")
        lse = torch.empty(rows, device="cuda")
        grad = torch.empty_like(z)
        zb = rows * V * esz
        reps = 20 if zb > (1 << 28) else 200

        # correctness first: loss vs float64; sample gradient rows vs float64
        a_f = fce.args(z, t32, losses, lse)
        a_g = fce.args(z, t32, losses, lse, grad)
        s, n = fce.forward(a_f)
        rs, rn = ref_loss64(z, t)
        ok_loss = n == rn and abs(s - rs) <= 1e-6 * max(1.0, abs(rs))
        grad.fill_(float("nan"))
        s2, _ = fce.forward(a_g)
        sample = torch.arange(0, rows, max(1, rows // 16), device="cuda")[:16]
        zs = z[sample].double().requires_grad_(True)
        F.cross_entropy(zs, t[sample], ignore_index=-100, reduction="sum").backward()
        gref = zs.grad * (1.0 / max(n, 1))
        gerr = ((grad[sample].double() - gref).abs() / (gref.abs() + 1e-30)).nan_to_num(posinf=1e30)
        # 16-bit output: within one unit in the last place of the float64 value
        ulp = {torch.bfloat16: 2 ** -7, torch.float16: 2 ** -10, torch.float32: 4e-6}[dtype]
        ok_grad = bool(((grad[sample].double() - gref).abs() <= ulp * gref.abs() + 1e-30 + (6e-8 if dtype == torch.float16 else 0)).all())
        nan_written = bool(torch.isnan(grad).any())
        row = {"rows": rows, "vocab": V, "loss": s / max(n, 1), "ref_loss": rs / max(rn, 1),
               "loss_rel_err": abs(s - rs) / max(1e-30, abs(rs)), "fused_loss_equals_forward": s2 == s,
               "grad_ok": ok_grad and not nan_written, "grad_max_rel_err": float(gerr.max()), "loss_ok": ok_loss}

        # timings
        f_ms = time_ms(lambda: fce.forward(a_f), reps)
        fused_ms = time_ms(lambda: fce.forward(a_g), reps)
        b_ms = time_ms(lambda: fce.backward(a_g), reps)
        zr = z.detach().requires_grad_(True)

        def eager_fwd():
            with torch.no_grad():
                F.cross_entropy(z, t)

        def eager_fb():
            loss = F.cross_entropy(zr, t)
            torch.autograd.grad(loss, zr)

        te_f = time_ms(eager_fwd, reps) if not o.no_torch else (float("nan"),)
        te_fb = time_ms(eager_fb, reps) if not o.no_torch else (float("nan"),)
        row.update(fusedce_fwd_ms=f_ms[0], fusedce_fused_ms=fused_ms[0], fusedce_bwd_ms=b_ms[0],
                   torch_fwd_ms=te_f[0], torch_fwdbwd_ms=te_fb[0])
        if not o.no_compile and not o.no_torch:
            try:
                cf = torch.compile(lambda x, y: F.cross_entropy(x, y), dynamic=False)

                def comp_fb():
                    loss = cf(zr, t)
                    torch.autograd.grad(loss, zr)

                t0 = time.time()
                comp_fb()
                torch.cuda.synchronize()
                row["compile_s"] = time.time() - t0
                tc_fb = time_ms(comp_fb, reps)
                row["compile_fwdbwd_ms"] = tc_fb[0]
            except Exception as e:  # report, do not hide
                row["compile_error"] = str(e).split("\n")[0][:200]
        gb = lambda bytes_, ms: bytes_ / ms / 1e6
        row["fwd_gbs"] = gb(zb, f_ms[0])
        row["fused_gbs"] = gb(2 * zb, fused_ms[0])
        row["bwd_gbs"] = gb(2 * zb, b_ms[0])
        row["fwd_pct_read"] = 100 * row["fwd_gbs"] / read_gbs
        row["fused_pct_copy"] = 100 * row["fused_gbs"] / copy_gbs
        row["x_eager_fb"] = te_fb[0] / fused_ms[0]
        if "compile_fwdbwd_ms" in row:
            row["x_compile_fb"] = row["compile_fwdbwd_ms"] / fused_ms[0]
        results.append(row)
        print(json.dumps(row), flush=True)
        del z, grad, zr, losses, lse
        torch.cuda.empty_cache()

    table = []
    p = table.append
    p(f"| shape ({o.dtype}) | fwd ms | fwd GB/s (% read) | fused ms | fused GB/s (% copy) | bwd ms | torch fwd ms | torch fwd+bwd ms | compile fwd+bwd ms | fused vs eager | fused vs compile | loss/grad ok |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        c = r.get("compile_fwdbwd_ms")
        p(f"| {r['rows']}×{r['vocab']} | {r['fusedce_fwd_ms']:.3f} | {r['fwd_gbs']:.0f} ({r['fwd_pct_read']:.0f}%) | "
              f"{r['fusedce_fused_ms']:.3f} | {r['fused_gbs']:.0f} ({r['fused_pct_copy']:.0f}%) | {r['fusedce_bwd_ms']:.3f} | "
              f"{r['torch_fwd_ms']:.3f} | {r['torch_fwdbwd_ms']:.3f} | {'—' if c is None else f'{c:.3f}'} | "
              f"{r['x_eager_fb']:.2f}× | {('%.2f×' % r['x_compile_fb']) if 'x_compile_fb' in r else '—'} | "
              f"{'yes' if r['loss_ok'] and r['grad_ok'] else 'NO'} |")
    print()
    print("\n".join(table))
    outputs = []
    if o.json:
        outputs.append((o.json, None))
    if o.out:
        os.makedirs(o.out, exist_ok=True)
        stem = os.path.join(o.out, f"cuda-{dev.name.replace(' ', '_')}-{meta['date'][:10]}")
        outputs.append((stem + ".json", stem + ".md"))
    for js, md in outputs:
        with open(js, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
        if md:
            with open(md, "w") as f:
                f.write(f"# fusedce GPU bench — {dev.name}, {meta['date']}, git {meta['git']}, torch {meta['torch']}\n\n")
                f.write(f"Ceilings: copy {copy_gbs:.0f} GB/s (read + write), read-only {read_gbs:.0f} GB/s.\n\n")
                f.write("\n".join(table) + "\n")
    bad = [r for r in results if not (r["loss_ok"] and r["grad_ok"])]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
