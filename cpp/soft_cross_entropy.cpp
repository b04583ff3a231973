// Soft-target cross-entropy (distillation), KL divergence (forward and reverse) and entropy, CPU.
// The math is in fusedce.h above SoftArgs. The three share one pass over a row pair: per block b
// of kBlock elements (the same fixed partition as every other kernel), the trained logits x = z/T
// give (mx_b, Sx_b = Σ e^{x_j − mx_b}) and the target gives (my_b, Sy_b) from its logits y = u/T,
// or Y_b = Σ q_j from probabilities; one cross term C_b per op is summed alongside:
//   SoftCrossEntropy  C_b = Σ_j q̃_j·(mx_b − x_j) ≥ 0,   loss = F·Σ_b c_b·[(lse_x − mx_b)·Sy_b + C_b]
//   KlForward         C_b = Σ_j q̃_j·(y_j − x_j),         loss = Σ_b c_b·C_b + lse_x − lse_y
//   KlReverse         C_b = Σ_j p̃_j·(x_j − y_j),         loss = Σ_b e^{mx_b − lse_x}·C_b + lse_y − lse_x
// with q̃_j = e^{y_j − my_b} (q_j itself for probabilities, and c_b = 1 there), c_b = e^{my_b − lse_y},
// p̃_j = e^{x_j − mx_b}. Cross-entropy is written as a sum of non-negative terms (no cancellation);
// KL of two identical rows is exactly 0 (every C_b is 0 and lse_x = lse_y bit for bit).
//
// Reads and writes, per row: the forward reads z and the target once (one exp per element each).
// With a gradient, where the ISA has the block kernels (partial_pair, partial_probs), pass 1 keeps
// the exps in scratch rows and pass 2 writes the gradient from them (no more exps; KL reverse reads
// z and u again for x − y); elsewhere it reads both again and takes a second exp per element;
// the backward reads the target once for its lse (or Σq), then z and the target, and writes the
// gradient once. No probability row is stored.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "dtype.h"
#include "fusedce.h"
#include "loss_rows.h"
#include "row_math.h"
#include "thread_pool.h"

namespace fusedce {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// A block's max and Σ exp(x − max) (in double).
struct BlockPartial {
  float m;
  double s;
};

// A block's (max, Σ exp(x − max)), with e = exp(x − max) left in `e` (0 for an all −inf block,
// NaN for a NaN one): the max and the exps by the ISA's fused block kernel, the sum again over
// e by lane_sum (fp32 chunks added in double), whose rounding is ~1/16 of the kernel's
// 256-term fp32 lanes: these losses are differenced by gradient checks.   x, e: (n,) fp32
BlockPartial block_partial(const Kernels& k, const float* x, int64_t n, float* e) {
  const Partial p = k.partial_store[int(DType::F32)](x, n, e);
  if (p.s != p.s || p.s == 0.0f) return {p.m, double(p.s)};
  return {p.m, lane_sum(n, [&](int64_t j) { return e[j]; })};
}

// Widens n elements of a row at offset off and scales them by s.   src: row of dt;  x: (n,) fp32
void load_scaled(const void* src, DType dt, int64_t off, int64_t n, float s, float* x) {
  widen(static_cast<const char*>(src) + size_t(off) * dtype_size(dt), dt, n, x);
  if (s != 1.0f)
    for (int64_t j = 0; j < n; ++j) x[j] *= s;
}

// g = NaN over a whole gradient row (a row whose p is NaN, on the fused paths).   g: (vocab,) of gdt
void nan_row(char* g, DType gdt, int64_t vocab) {
  BlockBuffers& buf = block_buffers();
  std::fill(buf.a, buf.a + kBlock, std::numeric_limits<float>::quiet_NaN());
  for (int64_t b0 = 0; b0 < vocab; b0 += kBlock)
    narrow(buf.a, gdt, std::min(kBlock, vocab - b0), g + size_t(b0) * dtype_size(gdt));
}

double fold_lse(const Fold& f) { return f.nan ? std::numeric_limits<double>::quiet_NaN() : f.M + std::log(f.S); }

struct Row {
  const char* z;  // (V,) of a.dtype
  const char* u;  // (V,) of a.target_dtype, or (V,) f32 probabilities
};

// The target's row constant: lse_y for logits, Σ q for probabilities (block sums folded in
// order). The forward computes the same numbers inline, in the same order, from the same calls.
double target_constant(const Kernels& k, const SoftArgs& a, const Row& row) {
  BlockBuffers& buf = block_buffers();
  if (a.target_probs) {
    const auto* q = reinterpret_cast<const float*>(row.u);
    double qs = 0.0;
    for (int64_t b0 = 0; b0 < a.vocab; b0 += kBlock)
      qs += lane_sum(std::min(kBlock, a.vocab - b0), [&](int64_t j) { return q[b0 + j]; });
    return qs;
  }
  Fold f;
  for (int64_t b0 = 0; b0 < a.vocab; b0 += kBlock) {
    const int64_t n = std::min(kBlock, a.vocab - b0);
    load_scaled(row.u, a.target_dtype, b0, n, a.inv_temperature, buf.c);
    const BlockPartial p = block_partial(k, buf.c, n, buf.d);
    f.add(p.m, p.s);
  }
  return fold_lse(f);
}

struct BlockSummary {
  BlockPartial px, py;  // py.s = Y_b for probabilities (py.m unused)
  double C;
};

struct RowResult {
  double lse_x, constant, loss;  // constant: lse_y, or Σq
};

// Pass 1 over one row pair (see the file comment). Teacher logits, where the ISA has partial_pair:
// one kernel call per block reads both rows once and returns (mx, Sx), (my, Sy) and C_b (fp32
// lanes, as the plain kernels), and with ex_row/ey_row keeps both rows' exps for the fused
// gradient. Elsewhere each block is widened into L1 and summed by lane_sum.
RowResult row_forward(const Kernels& k, const SoftArgs& a, const Row& row, std::vector<BlockSummary>& blocks,
                      float* ex_row = nullptr, float* ey_row = nullptr) {
  BlockBuffers& buf = block_buffers();
  float *x = buf.a, *ex = buf.b, *y = buf.c, *ey = buf.d;
  blocks.clear();
  Fold fx, fy;
  const auto pair = a.target_probs ? nullptr : k.partial_pair[int(a.op)][int(a.dtype)][int(a.target_dtype)];
  const auto probs = a.target_probs ? k.partial_probs[int(a.dtype)] : nullptr;
  double qsum = 0.0;
  const auto* q = reinterpret_cast<const float*>(row.u);
  for (int64_t b0 = 0; b0 < a.vocab; b0 += kBlock) {
    const int64_t n = std::min(kBlock, a.vocab - b0);
    if (probs) {  // one kernel call: (mx, Sx), Y_b = Σ q and C_b = Σ_{q≠0} q·(mx − x)
      const SmoothPartial sp = probs(row.z + size_t(b0) * dtype_size(a.dtype), n, a.inv_temperature,
                                     reinterpret_cast<const float*>(row.u) + b0, ex_row ? ex_row + b0 : nullptr);
      BlockSummary s{{sp.m, sp.s}, {0.0f, sp.wsum}, sp.m == kNegInf ? 0.0 : sp.q};
      qsum += s.py.s;
      fx.add(s.px.m, s.px.s);
      blocks.push_back(s);
      continue;
    }
    if (pair) {
      const PairPartial pp = pair(row.z + size_t(b0) * dtype_size(a.dtype), row.u + size_t(b0) * dtype_size(a.target_dtype), n,
                                  a.inv_temperature, ex_row ? ex_row + b0 : nullptr, ey_row ? ey_row + b0 : nullptr);
      const BlockSummary s{{pp.mx, pp.sx}, {pp.my, pp.sy}, pp.c};
      fx.add(s.px.m, s.px.s);
      fy.add(s.py.m, s.py.s);
      blocks.push_back(s);
      continue;
    }
    load_scaled(row.z, a.dtype, b0, n, a.inv_temperature, x);
    BlockSummary s{block_partial(k, x, n, ex), {0.0f, 0.0}, 0.0};
    const float mx = s.px.m;
    const bool xmasked = mx == kNegInf;
    if (a.target_probs) {
      s.py.s = lane_sum(n, [&](int64_t j) { return q[b0 + j]; });
      qsum += s.py.s;
      if (!xmasked) s.C = lane_sum(n, [&](int64_t j) { return q[b0 + j] == 0.0f ? 0.0f : q[b0 + j] * (mx - x[j]); });
    } else {
      load_scaled(row.u, a.target_dtype, b0, n, a.inv_temperature, y);
      s.py = block_partial(k, y, n, ey);
      fy.add(s.py.m, s.py.s);
      switch (a.op) {
        case SoftOp::CrossEntropy:
          if (!xmasked) s.C = lane_sum(n, [&](int64_t j) { return ey[j] == 0.0f ? 0.0f : ey[j] * (mx - x[j]); });
          break;
        case SoftOp::KlForward:
          s.C = lane_sum(n, [&](int64_t j) { return ey[j] == 0.0f ? 0.0f : ey[j] * (y[j] - x[j]); });
          break;
        case SoftOp::KlReverse:
          s.C = lane_sum(n, [&](int64_t j) { return ex[j] == 0.0f ? 0.0f : ex[j] * (x[j] - y[j]); });
          break;
      }
    }
    fx.add(s.px.m, s.px.s);
    blocks.push_back(s);
  }
  const double lse_x = fold_lse(fx);
  if (a.target_probs) {
    double loss = 0.0;
    // Y_b may be negative (negative class weights): every block with a target term adds
    for (const BlockSummary& s : blocks)
      loss += (s.py.s != 0.0 ? (lse_x - double(s.px.m)) * s.py.s : 0.0) + s.C;
    return {lse_x, qsum, loss * a.loss_factor};
  }
  const double lse_y = fold_lse(fy);
  double acc = 0.0;
  for (const BlockSummary& s : blocks) {
    switch (a.op) {
      case SoftOp::CrossEntropy:
        if (s.py.s > 0.0) acc += std::exp(double(s.py.m) - lse_y) * ((lse_x - double(s.px.m)) * s.py.s + s.C);
        break;
      case SoftOp::KlForward:
        if (s.py.s > 0.0) acc += std::exp(double(s.py.m) - lse_y) * s.C;
        break;
      case SoftOp::KlReverse:
        if (s.px.s > 0.0) acc += std::exp(double(s.px.m) - lse_x) * s.C;
        break;
    }
  }
  double loss = acc;
  if (a.op == SoftOp::CrossEntropy) loss *= a.loss_factor;
  if (a.op == SoftOp::KlForward) loss += lse_x - lse_y;
  if (a.op == SoftOp::KlReverse) loss += lse_y - lse_x;
  if (lse_x != lse_x || lse_y != lse_y) loss = std::numeric_limits<double>::quiet_NaN();
  return {lse_x, lse_y, loss};
}

// The gradient of one row (fusedce.h): c = upstream·F/T (F = 1 for KL);
//   probabilities:  g_j = c·(Σq·p_j − q_j)
//   logits:         g_j = c·(p_j − q_j)                       (SoftCrossEntropy, KlForward)
//                   g_j = c·p_j·((x_j − lse_x) − (y_j − lse_y) − L)   (KlReverse; 0 where p_j = 0)
// z (and the target) are widened into buffers block by block before the block's gradient is
// stored, so g may be z itself.
void row_grad(const Kernels& k, const SoftArgs& a, const Row& row, char* g, DType gdt, float lse_x, double constant,
              double kl, double c) {
  BlockBuffers& buf = block_buffers();
  float *x = buf.a, *p = buf.b, *y = buf.c, *q = buf.d;
  const float cf = float(c), lse_y = float(constant), qs = float(constant), L = float(kl);
  const auto* qp = reinterpret_cast<const float*>(row.u);
  const size_t gsz = dtype_size(gdt);
  for (int64_t b0 = 0; b0 < a.vocab; b0 += kBlock) {
    const int64_t n = std::min(kBlock, a.vocab - b0);
    load_scaled(row.z, a.dtype, b0, n, a.inv_temperature, x);
    k.grad[int(DType::F32)][int(DType::F32)](x, p, n, lse_x, 1.0f);  // p = exp(x − lse_x)
    if (a.target_probs) {
      for (int64_t j = 0; j < n; ++j) p[j] = cf * (qs * p[j] - qp[b0 + j]);
    } else {
      load_scaled(row.u, a.target_dtype, b0, n, a.inv_temperature, y);
      if (a.op == SoftOp::KlReverse) {
        for (int64_t j = 0; j < n; ++j)
          p[j] = p[j] == 0.0f ? 0.0f : cf * p[j] * (((x[j] - lse_x) - (y[j] - lse_y)) - L);
      } else {
        k.grad[int(DType::F32)][int(DType::F32)](y, q, n, lse_y, 1.0f);  // q = exp(y − lse_y)
        for (int64_t j = 0; j < n; ++j) p[j] = cf * (p[j] - q[j]);
      }
    }
    narrow(p, gdt, n, g + size_t(b0) * gsz);
  }
}

double grad_coefficient(const SoftArgs& a, float up) {
  const double f = a.op == SoftOp::CrossEntropy ? a.loss_factor : 1.0;
  return double(up) * f * double(a.inv_temperature);
}

template <class Fn>
void for_rows(const SoftArgs& a, Fn&& fn) {
  for_each_row(a.rows, a.vocab, a.threads, fn);
}

Row row_of(const SoftArgs& a, int64_t r) {
  const size_t V = size_t(a.vocab);
  const size_t tsz = a.target_probs ? 4 : dtype_size(a.target_dtype);
  return {static_cast<const char*>(a.logits) + size_t(r) * V * dtype_size(a.dtype),
          static_cast<const char*>(a.target) + size_t(r) * V * tsz};
}

// A row's target as the kernels read it, and whether it counts. Probabilities with smoothing or
// weights are rewritten into a per-thread row, q̃_j = w_j·((1 − ε)·q_j + ε/V); a row counts when
// its q is not all 0 (whatever q̃ sums to). Everything else is read in place.
struct TargetRow {
  Row row;
  bool empty;  // an all-zero probability row: loss 0, lse 0, gradient 0
};
TargetRow target_row(const SoftArgs& a, int64_t r) {
  Row row = row_of(a, r);
  if (!a.target_probs) return {row, false};
  const auto* q = reinterpret_cast<const float*>(row.u);
  bool any = false;
  for (int64_t j = 0; j < a.vocab && !any; ++j) any = q[j] != 0.0f;
  if (!any) return {row, true};
  if (a.label_smoothing == 0.0f && !a.weight) return {row, false};
  thread_local std::vector<float> qt;
  qt.resize(size_t(a.vocab));
  const float keep = 1.0f - a.label_smoothing, spread = float(double(a.label_smoothing) / double(a.vocab));
  for (int64_t j = 0; j < a.vocab; ++j) {
    const float v = keep * q[j] + spread;
    qt[size_t(j)] = a.weight ? a.weight[j] * v : v;
  }
  row.u = reinterpret_cast<const char*>(qt.data());
  return {row, false};
}

}  // namespace

SoftTotals soft_forward(const SoftArgs& a, const SoftForwardOut& out) {
  const Kernels& k = a.kernels ? *a.kernels : active_kernels();
  CountedRows<1> parts(a.rows);
  const size_t grow = size_t(a.vocab) * dtype_size(out.grad.dtype);
  for_rows(a, [&](int64_t r) {
    thread_local std::vector<BlockSummary> blocks;
    const TargetRow tr = target_row(a, r);
    const Row row = tr.row;
    char* g = out.grad.data ? static_cast<char*>(out.grad.data) + size_t(r) * grow : nullptr;
    if (tr.empty) {  // an all-zero probability row counts nowhere
      out.losses[r] = out.lse[r] = 0.0f;
      if (g) std::memset(g, 0, grow);
      return;
    }
    // the one-exp fused gradient from pass 1's exps: teacher logits (every op) and probabilities
    const bool one_exp = g && (a.target_probs ? k.partial_probs[int(a.dtype)] && k.scale_sub_store[0]
                                              : k.pair_grad_store[0] && k.klr_grad_store[0][0][0] &&
                                                    k.partial_pair[int(a.op)][int(a.dtype)][int(a.target_dtype)]);
    thread_local std::vector<float> ex_row, ey_row;  // ey_row: the teacher's exps (logit targets only)
    const bool keep_ey = one_exp && !a.target_probs;
    if (one_exp && ex_row.size() < size_t(a.vocab)) ex_row.resize(size_t(a.vocab));
    if (keep_ey && ey_row.size() < size_t(a.vocab)) ey_row.resize(size_t(a.vocab));
    const RowResult rr = row_forward(k, a, row, blocks, one_exp ? ex_row.data() : nullptr, keep_ey ? ey_row.data() : nullptr);
    parts.count(r, {rr.loss});
    out.losses[r] = float(rr.loss);
    out.lse[r] = float(rr.lse_x);
    if (g && one_exp && !(rr.lse_x > -std::numeric_limits<double>::infinity())) {
      nan_row(g, out.grad.dtype, a.vocab);  // no finite logit (or a NaN): p_j = NaN, as the portable pass
    } else if (g && one_exp) {
      // g_j = c·(p_j − q_j) = ex_j·c·e^{mx_b − lse_x} − ey_j·c·e^{my_b − lse_y}, in double per block
      const double c = grad_coefficient(a, out.grad.row_scale ? out.grad.row_scale[r] : out.grad.scale);
      const size_t gsz = dtype_size(out.grad.dtype);
      for (size_t i = 0; i < blocks.size(); ++i) {
        const int64_t b0 = int64_t(i) * kBlock, n = std::min(kBlock, a.vocab - b0);
        if (a.target_probs) {
          // g_j = c·(Σq·p_j − q_j) = (c·Σq·e^{mx_b − lse_x})·e_j − c·q_j
          const float cx = float(c * rr.constant * std::exp(double(blocks[i].px.m) - rr.lse_x));
          k.scale_sub_store[int(out.grad.dtype)](ex_row.data() + b0, g + size_t(b0) * gsz, n, cx, float(c),
                                                 reinterpret_cast<const float*>(row.u) + b0, false);
          continue;
        }
        if (a.op == SoftOp::KlReverse) {
          // g_j = c·p_j·((x_j − lse_x) − (y_j − lse_y) − L), p_j = e^x_j·e^{mx_b − lse_x}:
          //     = (c·e^{mx_b − lse_x})·e^x_j·(((x_j − mx_b) − (y_j − my_b)) + k_b),
          //   k_b = (mx_b − lse_x) − (my_b − lse_y) − L in double (each difference small where p is)
          const BlockSummary& bs = blocks[i];
          const bool live = bs.px.s > 0.0 || bs.px.s != bs.px.s;
          const double mx = bs.px.m, my = bs.py.m;
          const float cx = live ? float(c * std::exp(mx - rr.lse_x)) : 0.0f;
          const float kb = live ? float((mx - rr.lse_x) - (my - rr.constant) - rr.loss) : 0.0f;
          k.klr_grad_store[int(a.dtype)][int(a.target_dtype)][int(out.grad.dtype)](
              row.z + size_t(b0) * dtype_size(a.dtype), row.u + size_t(b0) * dtype_size(a.target_dtype), ex_row.data() + b0,
              g + size_t(b0) * gsz, n, a.inv_temperature, live ? float(mx) : 0.0f, live && my == my ? float(my) : 0.0f, kb, cx);
          continue;
        }
        const float ca = float(c * std::exp(double(blocks[i].px.m) - rr.lse_x));
        const float cb = float(c * std::exp(double(blocks[i].py.m) - rr.constant));
        k.pair_grad_store[int(out.grad.dtype)](ex_row.data() + b0, ey_row.data() + b0, g + size_t(b0) * gsz, n, ca, cb);
      }
    } else if (g) {
      const float up = out.grad.row_scale ? out.grad.row_scale[r] : out.grad.scale;
      row_grad(k, a, row, g, out.grad.dtype, out.lse[r], rr.constant, rr.loss, grad_coefficient(a, up));
    }
  });
  const auto t = parts.totals();
  return {t.sum[0], t.count};
}

void soft_backward(const SoftArgs& a, const float* lse, const GradOut& grad) {
  const Kernels& k = a.kernels ? *a.kernels : active_kernels();
  const size_t grow = size_t(a.vocab) * dtype_size(grad.dtype);
  for_rows(a, [&](int64_t r) {
    const TargetRow tr = target_row(a, r);
    const Row row = tr.row;
    char* g = static_cast<char*>(grad.data) + size_t(r) * grow;
    if (tr.empty) {
      std::memset(g, 0, grow);
      return;
    }
    const double constant = target_constant(k, a, row);
    const float up = grad.row_scale ? grad.row_scale[r] : grad.scale;
    row_grad(k, a, row, g, grad.dtype, lse[r], constant, 0.0, grad_coefficient(a, up));
  });
}

namespace {

struct EntropyRow {
  double lse, H;
};

// One row's lse and entropy of x = z/T, in one pass over z:
//   T_b = Σ e_j·(m_b − x_j) ≥ 0 per block,  H = Σ_b e^{m_b − lse}·[(lse − m_b)·S_b + T_b]
// (a sum of non-negative terms: no cancellation).
// Where the ISA has partial_entropy, S_b and T_b come from its exp loop (fp32 lanes, as the plain
// kernels' sums: one pass over z, ~0.9× of the plain forward); elsewhere from the block widened
// into L1 and summed by lane_sum.
// With e_row (only where the ISA has partial_entropy), the exps e_j = exp(x_j − m_b) are kept
// there for the one-exp gradient; blocks gets each block's (m_b, S_b) and T_b.
using EntropyBlocks = std::vector<std::pair<BlockPartial, double>>;
EntropyRow entropy_row(const Kernels& k, const char* z, DType dtype, int64_t vocab, float inv_temperature,
                       EntropyBlocks& blocks, float* e_row = nullptr) {
  BlockBuffers& buf = block_buffers();
  float *x = buf.a, *e = buf.b;
  blocks.clear();
  Fold f;
  const auto fast = k.partial_entropy[int(dtype)];
  for (int64_t b0 = 0; b0 < vocab; b0 += kBlock) {
    const int64_t n = std::min(kBlock, vocab - b0);
    BlockPartial p;
    double T = 0.0;
    if (fast) {
      const SmoothPartial sp = fast(z + size_t(b0) * dtype_size(dtype), n, inv_temperature, e_row ? e_row + b0 : nullptr);
      p = {sp.m, sp.s};
      T = p.s > 0.0 ? sp.q : 0.0;
    } else {
      load_scaled(z, dtype, b0, n, inv_temperature, x);
      p = block_partial(k, x, n, e);
      const float m = p.m;
      T = p.s > 0.0 ? lane_sum(n, [&](int64_t j) { return e[j] == 0.0f ? 0.0f : e[j] * (m - x[j]); }) : 0.0;
    }
    f.add(p.m, p.s);
    blocks.push_back({p, T});
  }
  const double lse = fold_lse(f);
  double H = 0.0;
  for (const auto& [p, T] : blocks)
    if (p.s > 0.0) H += std::exp(double(p.m) - lse) * ((lse - double(p.m)) * p.s + T);
  return {lse, lse == lse ? H : std::numeric_limits<double>::quiet_NaN()};
}

}  // namespace

void entropy_rows(const void* logits, DType dtype, int64_t rows, int64_t vocab, float inv_temperature, int threads,
                  float* out) {
  const Kernels& k = active_kernels();
  for_each_row(rows, vocab, threads, [&](int64_t r) {
    const char* z = static_cast<const char*>(logits) + size_t(r) * size_t(vocab) * dtype_size(dtype);
    thread_local EntropyBlocks blocks;
    out[r] = float(entropy_row(k, z, dtype, vocab, inv_temperature, blocks).H);
  });
}

// The entropy as a loss (fusedce.h): H_i per row, and with a gradient
//   dH/dz_j = (1/T)·dH/dx_j = −(1/T)·p_j·(log p_j + H),   log p_j = x_j − lse
// (0 where p_j = 0). Where the ISA has the entropy's block kernels, pass 1 keeps e_j = exp(x_j − m_b)
// in a scratch row and pass 2 writes, with c_b = exp(m_b − lse) and k_b = m_b − lse + H in double,
//   g_j = −(up/T)·c_b·e_j·((x_j − m_b) + k_b)
// (one exp per element in all; near a one-hot row x_j − m_b and k_b are each small and exact
// enough, where x_j − lse + H would cancel). Elsewhere a second pass takes p_j again by an exp and
// log p_j + H in double.
double entropy_forward(const void* logits, DType dtype, int64_t rows, int64_t vocab, float inv_temperature, int threads,
                       float* losses, float* lse, const GradOut& grad) {
  const Kernels& k = active_kernels();
  CountedRows<1> parts(rows);
  const size_t zrow = size_t(vocab) * dtype_size(dtype), grow = size_t(vocab) * dtype_size(grad.dtype);
  const auto fused = grad.data ? k.entropy_grad_store[int(dtype)][int(grad.dtype)] : nullptr;
  for_each_row(rows, vocab, threads, [&](int64_t r) {
    const char* z = static_cast<const char*>(logits) + size_t(r) * zrow;
    thread_local EntropyBlocks blocks;
    thread_local std::vector<float> e_row;
    const bool one_exp = fused && k.partial_entropy[int(dtype)];
    if (one_exp && e_row.size() < size_t(vocab)) e_row.resize(size_t(vocab));
    const EntropyRow e = entropy_row(k, z, dtype, vocab, inv_temperature, blocks, one_exp ? e_row.data() : nullptr);
    parts.count(r, {e.H});
    losses[r] = float(e.H);
    lse[r] = float(e.lse);
    if (!grad.data) return;
    const float up = grad.row_scale ? grad.row_scale[r] : grad.scale;
    // a NaN row, or one without a finite logit (lse −inf): its whole gradient NaN, as p_j = NaN in
    // the portable pass
    if (one_exp && (!(e.lse > -std::numeric_limits<double>::infinity()) || e.H != e.H)) {
      nan_row(static_cast<char*>(grad.data) + size_t(r) * grow, grad.dtype, vocab);
      return;
    }
    if (one_exp) {
      char* g = static_cast<char*>(grad.data) + size_t(r) * grow;
      for (size_t i = 0; i < blocks.size(); ++i) {
        const int64_t b0 = int64_t(i) * kBlock, n = std::min(kBlock, vocab - b0);
        const double m = blocks[i].first.m;
        // a masked block (m = −inf) has e ≡ 0: its gradient is 0 whatever c and k are
        const bool live = blocks[i].first.s > 0.0 || blocks[i].first.s != blocks[i].first.s;
        const float cb = live ? float(-double(up) * double(inv_temperature) * std::exp(m - e.lse)) : 0.0f;
        const float kb = live ? float((m - e.lse) + e.H) : 0.0f;
        fused(z + size_t(b0) * dtype_size(dtype), e_row.data() + b0, g + size_t(b0) * dtype_size(grad.dtype), n,
              inv_temperature, live ? float(m) : 0.0f, kb, cb);
      }
      return;
    }
    const float c = -float(double(up) * double(inv_temperature)), L = float(e.lse);
    BlockBuffers& buf = block_buffers();
    float *x = buf.a, *p = buf.b;
    char* g = static_cast<char*>(grad.data) + size_t(r) * grow;
    for (int64_t b0 = 0; b0 < vocab; b0 += kBlock) {
      const int64_t n = std::min(kBlock, vocab - b0);
      load_scaled(z, dtype, b0, n, inv_temperature, x);  // before the store: g may be z itself
      k.grad[int(DType::F32)][int(DType::F32)](x, p, n, L, 1.0f);  // p = exp(x − lse)
      // log p_j + H in double from the double lse: near a one-hot row both are ~0 and would cancel
      // to noise in fp32 (the fp32 lse alone is off by an ulp of |lse|)
      for (int64_t j = 0; j < n; ++j)
        p[j] = p[j] == 0.0f ? 0.0f : c * p[j] * float((double(x[j]) - e.lse) + e.H);
      narrow(p, grad.dtype, n, g + size_t(b0) * dtype_size(grad.dtype));
    }
  });
  return parts.totals().sum[0];
}

// The generalized Jensen–Shannon divergence (fusedce.h), 0 < β < 1, with p = softmax(y) the
// reference and q = softmax(x) the model (x = z/T, y = u/T), m = β·p + (1 − β)·q:
//   loss = β·Σ p_j·log(p_j/m_j) + (1 − β)·Σ q_j·log(q_j/m_j)
//   dloss/dq_j = (1 − β)·log(q_j/m_j), so dloss/dx_j = (1 − β)·q_j·(log(q_j/m_j) − KL(q‖m))
// Pass 1 finds both lse's; pass 2 computes p, q, m and the row's terms, keeping q_j and
// log(q_j/m_j) in a scratch row when the gradient is asked; pass 3 writes it. Two exps and a log
// per element, in double, vectorised (loss_rows.cpp, jsd_terms). A term with p_j = 0 (q_j = 0) adds 0.
double jsd_forward(const SoftArgs& a, double beta, float* losses, float* lse, const GradOut& grad) {
  const Kernels& k = a.kernels ? *a.kernels : active_kernels();
  CountedRows<1> parts(a.rows);
  const size_t grow = size_t(a.vocab) * dtype_size(grad.dtype);
  for_rows(a, [&](int64_t r) {
    const Row row = row_of(a, r);
    BlockBuffers& buf = block_buffers();
    float *x = buf.a, *ex = buf.b, *y = buf.c, *ey = buf.d;
    Fold fx, fy;
    for (int64_t b0 = 0; b0 < a.vocab; b0 += kBlock) {
      const int64_t n = std::min(kBlock, a.vocab - b0);
      load_scaled(row.z, a.dtype, b0, n, a.inv_temperature, x);
      load_scaled(row.u, a.target_dtype, b0, n, a.inv_temperature, y);
      const BlockPartial px = block_partial(k, x, n, ex), py = block_partial(k, y, n, ey);
      fx.add(px.m, px.s);
      fy.add(py.m, py.s);
    }
    const double lx = fold_lse(fx), ly = fold_lse(fy);
    thread_local std::vector<double> qrow, lrow;  // q_j and log(q_j/m_j) for the gradient, in double: the
                                                  // gradient subtracts KL(q‖m) from the latter
    char* g = grad.data ? static_cast<char*>(grad.data) + size_t(r) * grow : nullptr;
    if (g) {
      qrow.resize(size_t(a.vocab));
      lrow.resize(size_t(a.vocab));
    }
    const float Lx = float(lx);
    double loss = 0.0, klqm = 0.0;
    for (int64_t b0 = 0; b0 < a.vocab; b0 += kBlock) {
      const int64_t n = std::min(kBlock, a.vocab - b0);
      load_scaled(row.z, a.dtype, b0, n, a.inv_temperature, x);
      load_scaled(row.u, a.target_dtype, b0, n, a.inv_temperature, y);
      // in double: the loss is differenced by gradient checks, and fp32 terms would leave it
      // rough at the 1e-7 level (each element's exp and log rounded)
      thread_local std::vector<double> term, kl;
      term.resize(size_t(kBlock));
      kl.resize(size_t(kBlock));
      jsd_terms(x, y, n, lx, ly, beta, term.data(), kl.data(), g ? qrow.data() + b0 : nullptr,
                g ? lrow.data() + b0 : nullptr);
      const double part = lane_sum_f64(n, [&](int64_t j) { return term[size_t(j)]; });
      const double klb = lane_sum_f64(n, [&](int64_t j) { return kl[size_t(j)]; });
      loss += part;
      klqm += klb;
    }
    if (lx != lx || ly != ly) loss = std::numeric_limits<double>::quiet_NaN();
    parts.count(r, {loss});
    losses[r] = float(loss);
    lse[r] = Lx;
    if (!g) return;
    const float up = grad.row_scale ? grad.row_scale[r] : grad.scale;
    const double c = double(up) * (1.0 - beta) * double(a.inv_temperature);
    float* v = buf.a;
    for (int64_t b0 = 0; b0 < a.vocab; b0 += kBlock) {
      const int64_t n = std::min(kBlock, a.vocab - b0);
      for (int64_t j = 0; j < n; ++j) {
        const double q = qrow[size_t(b0 + j)];
        v[j] = q == 0.0 ? 0.0f : float(c * q * (lrow[size_t(b0 + j)] - klqm));
      }
      narrow(v, grad.dtype, n, g + size_t(b0) * dtype_size(grad.dtype));
    }
  });
  return parts.totals().sum[0];
}

}  // namespace fusedce
