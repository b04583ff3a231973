#!/usr/bin/env python3
"""GPU benchmark of the loss family's CUDA kernels (cuda/cross_entropy_options.cuh,
cuda/soft_cross_entropy.cuh, cuda/binary_cross_entropy.cuh) against the plain kernel and PyTorch
eager, on the very same device buffers (the C API of cuda/fusedce_cuda.h through ctypes on torch
tensors' data_ptr()).

Per case: correctness first (each loss against float64 torch, each gradient row sample likewise),
then CUDA-event medians after warm-up, in one run:
  options   labelSmoothing, weight, zLoss, logitScale, softcap, focal, stats: forward and fused,
            each as a fraction of the plain kernel's bandwidth (issue target: >= 90%)
  soft      soft CE and KL (both ways) from teacher logits, JSD, entropy: GB/s against their floor
            (two inputs read + one gradient written, at the copy ceiling; target >= 85%)
  bce       binary CE, forward and fused
  latency   one row of 128256: fusedce's C API call against torch eager F.cross_entropy
  lossOnDevice / stream: a whole step queued with no host wait (the device_loss path)

  python3 bench/loss_family_cuda.bench.py [--lib PATH] [--quick] [--json OUT]
"""
import argparse
import ctypes
import datetime
import json
import os
import statistics
import subprocess
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("fusedce GPU family bench: needs python3 with PyTorch (a CUDA build) on a machine with a GPU")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DT = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
P = ctypes.c_void_p


class Args(ctypes.Structure):  # fce_cuda_args
    _fields_ = [
        ("logits", P), ("dtype", ctypes.c_int), ("rows", ctypes.c_int64), ("vocab", ctypes.c_int64),
        ("targets", P), ("ignore_index", ctypes.c_int32), ("reduction", ctypes.c_int),
        ("losses", P), ("lse", P), ("grad", P), ("grad_dtype", ctypes.c_int),
        ("grad_output", ctypes.c_double), ("row_grad", P), ("stream", P),
        ("device_loss", P), ("device", ctypes.c_int), ("losses64", P),
    ]


class CeOptions(ctypes.Structure):  # fce_cuda_ce_options
    _fields_ = [("label_smoothing", ctypes.c_float), ("weight", P), ("z_loss", ctypes.c_float),
                ("logit_scale", ctypes.c_float), ("softcap", ctypes.c_float), ("focal_gamma", ctypes.c_float)]


class CeStats(ctypes.Structure):  # fce_cuda_ce_stats
    _fields_ = [("argmax", P), ("entropy", P), ("target_logprob", P), ("max_prob", P)]


class OptTotals(ctypes.Structure):  # fce_cuda_opt_totals
    _fields_ = [("ce_sum", ctypes.c_double), ("z_sum", ctypes.c_double), ("weight_total", ctypes.c_double),
                ("weight_sum", ctypes.c_double), ("count", ctypes.c_int64)]


class SoftArgs(ctypes.Structure):  # fce_cuda_soft_args
    _fields_ = [
        ("logits", P), ("dtype", ctypes.c_int), ("rows", ctypes.c_int64), ("vocab", ctypes.c_int64),
        ("target", P), ("target_dtype", ctypes.c_int), ("kind", ctypes.c_int), ("inv_temperature", ctypes.c_float),
        ("loss_factor", ctypes.c_double), ("label_smoothing", ctypes.c_float), ("weight", P), ("beta", ctypes.c_double),
        ("reduction", ctypes.c_int), ("losses", P), ("lse", P), ("grad", P), ("grad_dtype", ctypes.c_int),
        ("grad_output", ctypes.c_double), ("row_grad", P), ("stream", P), ("device", ctypes.c_int),
    ]


class BceArgs(ctypes.Structure):  # fce_cuda_bce_args
    _fields_ = [
        ("logits", P), ("dtype", ctypes.c_int), ("rows", ctypes.c_int64), ("vocab", ctypes.c_int64),
        ("targets", P), ("pos_weight", P), ("pos_weight_scalar", ctypes.c_float), ("weight", P),
        ("weight_per_class", ctypes.c_int), ("reduction", ctypes.c_int), ("losses", P), ("grad", P),
        ("grad_dtype", ctypes.c_int), ("grad_output", ctypes.c_double), ("stream", P), ("device", ctypes.c_int),
    ]


def ptr(t):
    return None if t is None else t.data_ptr()


class Lib:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.err = ctypes.create_string_buffer(512)

    def check(self, rc):
        if rc:
            raise RuntimeError(self.err.value.decode())

    def stream(self):
        return torch.cuda.current_stream().cuda_stream

    def ce(self, z, t, losses, lse, grad=None, opt=None, stats=None, device_loss=None):
        a = Args(ptr(z), DT[z.dtype], z.shape[0], z.shape[1], ptr(t), -100, 0, ptr(losses), ptr(lse), ptr(grad),
                 DT[grad.dtype] if grad is not None else 0, 1.0, None, self.stream(), ptr(device_loss), torch.cuda.current_device())
        if opt is None and stats is None:
            s, c = ctypes.c_double(), ctypes.c_int64()
            self.check(self.lib.fce_cuda_forward(ctypes.byref(a), ctypes.byref(s), ctypes.byref(c), self.err, 512))
            return s.value, c.value
        tot = OptTotals()
        o = opt if opt is not None else CeOptions(0.0, None, 0.0, 1.0, 0.0, 0.0)
        self.check(self.lib.fce_cuda_forward_opt(ctypes.byref(a), ctypes.byref(o), ctypes.byref(stats) if stats else None,
                                                 ctypes.byref(tot), self.err, 512))
        return tot.ce_sum + tot.z_sum, tot.count

    def soft(self, kind, z, u, losses, lse, grad=None, probs=False, T=1.0, beta=0.5):
        a = SoftArgs(ptr(z), DT[z.dtype], z.shape[0], z.shape[1], ptr(u), -1 if probs else (DT[u.dtype] if u is not None else 0),
                     kind, 1.0 / T, 1.0, 0.0, None, beta, 0, ptr(losses), ptr(lse), ptr(grad),
                     DT[grad.dtype] if grad is not None else 0, 1.0, None, self.stream(), torch.cuda.current_device())
        s, c = ctypes.c_double(), ctypes.c_int64()
        self.check(self.lib.fce_cuda_soft_forward(ctypes.byref(a), ctypes.byref(s), ctypes.byref(c), self.err, 512))
        return s.value, c.value

    def bce(self, z, y, grad=None, pos_weight=1.0):
        a = BceArgs(ptr(z), DT[z.dtype], z.shape[0], z.shape[1], ptr(y), None, pos_weight, None, 0, 1, None, ptr(grad),
                    DT[grad.dtype] if grad is not None else 0, 1.0, self.stream(), torch.cuda.current_device())
        s = ctypes.c_double()
        self.check(self.lib.fce_cuda_bce_forward(ctypes.byref(a), ctypes.byref(s), self.err, 512))
        return s.value

    def read(self, x):
        self.check(self.lib.fce_cuda_read(ctypes.c_void_p(x.data_ptr()), ctypes.c_size_t(x.numel() * x.element_size()),
                                          ctypes.c_void_p(self.stream()), self.err, 512))


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
    return statistics.median(out)


def rel(a, b):
    return abs(a - b) / max(1e-30, abs(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=os.environ.get("FUSEDCE_CUDA_LIB", os.path.join(ROOT, "cuda", "build", "Release", "libfusedce_cuda.so")))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    o = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("fusedce GPU family bench: PyTorch sees no CUDA device")
    L = Lib(o.lib)
    L.lib.fce_cuda_read.argtypes = [P, ctypes.c_size_t, P, ctypes.c_char_p, ctypes.c_size_t]
    dev = torch.cuda.get_device_properties(0)
    sha = os.environ.get("FUSEDCE_GIT_SHA", "")
    if not sha:
        try:
            sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except Exception:
            sha = ""
    meta = {"device": dev.name, "sms": dev.multi_processor_count, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "git": sha, "torch": torch.__version__}
    print(f"# {dev.name}, git {sha}, {meta['date']}", flush=True)
    big = torch.empty(2 << 30, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(big)
    for _ in range(50):
        dst.copy_(big)
    copy_gbs = 2 * big.numel() / time_ms(lambda: dst.copy_(big), 20) / 1e6
    read_gbs = big.numel() / time_ms(lambda: L.read(big), 20) / 1e6
    del big, dst
    torch.cuda.empty_cache()
    meta.update(copy_gbs=copy_gbs, read_gbs=read_gbs)
    print(f"ceilings: copy {copy_gbs:.0f} GB/s, read {read_gbs:.0f} GB/s", flush=True)

    rows, V = (1024, 128256) if o.quick else (4096, 128256)
    reps = 30
    g = torch.Generator(device="cuda").manual_seed(7)
    z = (torch.randn(rows, V, device="cuda", generator=g) * 2).to(torch.bfloat16)
    u = (torch.randn(rows, V, device="cuda", generator=g) * 2).to(torch.bfloat16)
    t = torch.randint(0, V, (rows,), device="cuda", generator=g)
    t32 = t.to(torch.int32)
    w = (torch.rand(V, device="cuda", generator=g) + 0.2)
    losses, lse = torch.empty(rows, device="cuda"), torch.empty(rows, device="cuda")
    grad = torch.empty_like(z)
    zb = z.numel() * 2
    res = {"meta": meta, "options": [], "soft": [], "bce": {}, "latency": {}}

    # ---- the plain kernel, then each option against it ----
    plain_f = time_ms(lambda: L.ce(z, t32, losses, lse), reps)
    plain_g = time_ms(lambda: L.ce(z, t32, losses, lse, grad), reps)
    argmax = torch.empty(rows, dtype=torch.int32, device="cuda")
    ent, tlp, mxp = (torch.empty(rows, device="cuda") for _ in range(3))
    st = CeStats(argmax.data_ptr(), ent.data_ptr(), tlp.data_ptr(), mxp.data_ptr())
    cases = [
        ("labelSmoothing 0.1", CeOptions(0.1, None, 0.0, 1.0, 0.0, 0.0), dict(label_smoothing=0.1)),
        ("weight", CeOptions(0.0, w.data_ptr(), 0.0, 1.0, 0.0, 0.0), dict(weight=w)),
        ("zLoss 1e-4", CeOptions(0.0, None, 1e-4, 1.0, 0.0, 0.0), None),
        ("logitScale 0.8", CeOptions(0.0, None, 0.0, 0.8, 0.0, 0.0), None),
        ("softcap 30", CeOptions(0.0, None, 0.0, 1.0, 30.0, 0.0), None),
        ("focal 2", CeOptions(0.0, None, 0.0, 1.0, 0.0, 2.0), None),
        ("stats", None, None),
    ]
    for name, opt, torch_kw in cases:
        stats = st if name == "stats" else None
        s, n = L.ce(z, t32, losses, lse, None, opt, stats)
        row = {"case": name}
        if torch_kw is not None:
            ref = sum(F.cross_entropy(z[i:i + 256].double(), t[i:i + 256], reduction="sum",
                                      **{k: (v.double() if torch.is_tensor(v) else v) for k, v in torch_kw.items()}).item()
                      for i in range(0, rows, 256))
            row["loss_rel_err"] = rel(s, ref)
        f_ms = time_ms(lambda: L.ce(z, t32, losses, lse, None, opt, stats), reps)
        g_ms = time_ms(lambda: L.ce(z, t32, losses, lse, grad, opt, stats), reps)
        row.update(fwd_ms=f_ms, fused_ms=g_ms, fwd_vs_plain=plain_f / f_ms, fused_vs_plain=plain_g / g_ms)
        if torch_kw is not None:
            zr = z.detach().requires_grad_(True)

            def eager():
                torch.autograd.grad(F.cross_entropy(zr, t, **torch_kw), zr)

            row["torch_fwdbwd_ms"] = time_ms(eager, reps)
        res["options"].append(row)
        print(json.dumps(row), flush=True)

    # ---- soft targets: floor = two inputs read + one gradient written at the copy ceiling ----
    for name, kind in [("soft CE", 0), ("KL forward", 1), ("KL reverse", 2), ("entropy", 3), ("JSD 0.5", 4)]:
        uu = None if kind == 3 else u
        s, n = L.soft(kind, z, uu, losses, lse)
        zz, yy = z[:256].double(), u[:256].double()
        lp, lq = F.log_softmax(zz, -1), F.log_softmax(yy, -1)
        if kind == 0:
            ref = -(lq.exp() * lp).sum().item()
        elif kind == 1:
            ref = (lq.exp() * (lq - lp)).sum().item()
        elif kind == 2:
            ref = (lp.exp() * (lp - lq)).sum().item()
        elif kind == 3:
            ref = -(lp.exp() * lp).sum().item()
        else:
            m = (0.5 * lq.exp() + 0.5 * lp.exp()).log()
            ref = (0.5 * (lq.exp() * (lq - m)) + 0.5 * (lp.exp() * (lp - m))).sum().item()
        part = torch.empty(256, device="cuda")
        L.soft(kind, z[:256].contiguous(), None if uu is None else u[:256].contiguous(), part, torch.empty(256, device="cuda"))
        f_ms = time_ms(lambda: L.soft(kind, z, uu, losses, lse), reps)
        g_ms = time_ms(lambda: L.soft(kind, z, uu, losses, lse, grad), reps)
        inputs = 1 if kind == 3 else 2
        row = {"case": name, "loss_rel_err_256_rows": rel(float(part.double().sum()), ref), "fwd_ms": f_ms, "fused_ms": g_ms,
               "fused_pct_floor": 100 * ((inputs + 1) * zb / copy_gbs / 1e6) / g_ms, "fwd_pct_read": 100 * (inputs * zb / read_gbs / 1e6) / f_ms}
        res["soft"].append(row)
        print(json.dumps(row), flush=True)

    # ---- binary CE ----
    y = (torch.rand(rows, V // 8, device="cuda", generator=g) < 0.1).float()
    xb = (torch.randn(rows, V // 8, device="cuda", generator=g) * 3).to(torch.bfloat16)
    gb = torch.empty_like(xb)
    s = L.bce(xb, y)
    ref = F.binary_cross_entropy_with_logits(xb.double(), y.double(), reduction="sum").item()
    res["bce"] = {"loss_rel_err": rel(s, ref), "fwd_ms": time_ms(lambda: L.bce(xb, y), reps),
                  "fused_ms": time_ms(lambda: L.bce(xb, y, gb), reps)}
    print(json.dumps(res["bce"]), flush=True)

    # ---- latency: one row ----
    z1, t1 = z[:1].contiguous(), t32[:1].contiguous()
    l1, s1, g1 = torch.empty(1, device="cuda"), torch.empty(1, device="cuda"), torch.empty_like(z1)
    dl = torch.empty(1, device="cuda")
    res["latency"] = {
        "fusedce_fwd_ms": time_ms(lambda: L.ce(z1, t1, l1, s1), 200),
        "fusedce_fused_ms": time_ms(lambda: L.ce(z1, t1, l1, s1, g1), 200),
        "fusedce_fused_device_loss_ms": time_ms(lambda: L.ce(z1, t1, l1, s1, g1, None, None, dl), 200),
        "torch_fwd_ms": time_ms(lambda: F.cross_entropy(z1, t[:1]), 200),
    }
    print(json.dumps(res["latency"]), flush=True)
    if o.json:
        with open(o.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
