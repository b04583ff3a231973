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

// g = NaN over n elements of a gradient row (a row whose p is NaN, on the fused paths).   g: (n,) of gdt
void nan_block(char* g, DType gdt, int64_t n) {
  BlockBuffers& buf = block_buffers();
  std::fill(buf.a, buf.a + n, std::numeric_limits<float>::quiet_NaN());
  narrow(buf.a, gdt, n, g);
}

// Per-row scratch for row_passes: when the rows are split over the pool (their blocks run on any
// thread) one buffer per row, else one per thread, reused row after row. Both are thread_local
// buffers kept across calls (of the calling thread when split: it waits for the workers that write
// into it), so that a call allocates and zeroes nothing once warm: a fresh rows × vocab vector per
// call cost more than a split row saves. Each scratch of a function has its own Slot, so that two
// of them never share a thread's buffer. Contents are unspecified until written.
template <class T, int Slot>
class RowScratch {
 public:
  RowScratch(int64_t rows, int64_t vocab, int threads, size_t per_row)
      : split_(split_rows(rows, vocab, threads)), per_row_(per_row) {
    if (split_ && per_row_ != 0) all_ = own(size_t(rows) * per_row_);
  }
  T* of(int64_t r) {
    if (per_row_ == 0) return nullptr;
    if (split_) return all_ + size_t(r) * per_row_;
    return own(per_row_);
  }

 private:
  static T* own(size_t n) {
    thread_local std::vector<T> buf;
    if (buf.size() < n) buf.resize(n);
    return buf.data();
  }
  bool split_;
  size_t per_row_;
  T* all_ = nullptr;
};

// The row driver of this file's ops. begin(r) first, then `passes` passes over rows × blocks: in
// pass p, block(p, r, i) for every block i of row r, then fold(p, r) once row r's blocks of that
// pass are done. With few rows (split_rows, as the plain driver) each (row, block) of a pass is a
// task of its own, and begin and the folds run on the calling thread between passes; otherwise a
// row runs begin and all its passes on one thread, in order. block writes only block i's outputs,
// and every number is the same either way.
template <class Begin, class Block, class FoldFn>
void row_passes(int64_t rows, int64_t vocab, int threads, int passes, Begin&& begin, Block&& block, FoldFn&& fold) {
  const int64_t nb = (vocab + kBlock - 1) / kBlock;
  if (split_rows(rows, vocab, threads)) {
    for (int64_t r = 0; r < rows; ++r) begin(r);
    for (int p = 0; p < passes; ++p) {
      for_each_block(rows, vocab, threads, [&](int64_t r, int64_t i) { block(p, r, i); });
      for (int64_t r = 0; r < rows; ++r) fold(p, r);
    }
    return;
  }
  for_each_row(rows, vocab, threads, [&](int64_t r) {
    begin(r);
    for (int p = 0; p < passes; ++p) {
      for (int64_t i = 0; i < nb; ++i) block(p, r, i);
      fold(p, r);
    }
  });
}

double fold_lse(const Fold& f) { return f.nan ? std::numeric_limits<double>::quiet_NaN() : f.M + std::log(f.S); }

struct Row {
  const char* z;  // (V,) of a.dtype
  const char* u;  // (V,) of a.target_dtype, or (V,) f32 probabilities
};

// The target's block partial at b0: (my_b, Sy_b) for logits, (0, Σ q) for probabilities.
BlockPartial target_block(const Kernels& k, const SoftArgs& a, const Row& row, int64_t b0) {
  BlockBuffers& buf = block_buffers();
  const int64_t n = std::min(kBlock, a.vocab - b0);
  if (a.target_probs) {
    const auto* q = reinterpret_cast<const float*>(row.u);
    return {0.0f, lane_sum(n, [&](int64_t j) { return q[b0 + j]; })};
  }
  load_scaled(row.u, a.target_dtype, b0, n, a.inv_temperature, buf.c);
  return block_partial(k, buf.c, n, buf.d);
}

// The target's row constant from its block partials in order: lse_y for logits, Σ q for
// probabilities. The forward folds the same numbers (its kernels compute the same block partials).
double fold_target(const SoftArgs& a, const BlockPartial* p, size_t nb) {
  if (a.target_probs) {
    double qs = 0.0;
    for (size_t i = 0; i < nb; ++i) qs += p[i].s;
    return qs;
  }
  Fold f;
  for (size_t i = 0; i < nb; ++i) f.add(p[i].m, p[i].s);
  return fold_lse(f);
}

struct BlockSummary {
  BlockPartial px, py;  // py.s = Y_b for probabilities (py.m unused)
  double C;
};

struct RowResult {
  double lse_x, constant, loss;  // constant: lse_y, or Σq
};

// Pass 1 over block [b0, b0 + n) of one row pair (see the file comment). Teacher logits, where
// the ISA has partial_pair: one kernel call reads both rows' blocks once and returns (mx, Sx),
// (my, Sy) and C_b (fp32 lanes, as the plain kernels), and with ex_row/ey_row keeps both rows'
// exps for the fused gradient (at the block's offset). Elsewhere the block is widened into L1 and
// summed by lane_sum. A block depends on nothing but its own elements, so the blocks of a row may
// run on any threads (soft_forward's few-rows split).
BlockSummary block_forward(const Kernels& k, const SoftArgs& a, const Row& row, int64_t b0, int64_t n, float* ex_row,
                           float* ey_row) {
  BlockBuffers& buf = block_buffers();
  float *x = buf.a, *ex = buf.b, *y = buf.c, *ey = buf.d;
  const auto* q = reinterpret_cast<const float*>(row.u);
  if (a.target_probs && k.partial_probs[int(a.dtype)]) {
    // one kernel call: (mx, Sx), Y_b = Σ q and C_b = Σ_{q≠0} q·(mx − x)
    const SmoothPartial sp = k.partial_probs[int(a.dtype)](row.z + size_t(b0) * dtype_size(a.dtype), n, a.inv_temperature,
                                                           q + b0, ex_row ? ex_row + b0 : nullptr);
    return {{sp.m, sp.s}, {0.0f, sp.wsum}, sp.m == kNegInf ? 0.0 : sp.q};
  }
  const auto pair = a.target_probs ? nullptr : k.partial_pair[int(a.op)][int(a.dtype)][int(a.target_dtype)];
  if (pair) {
    const PairPartial pp = pair(row.z + size_t(b0) * dtype_size(a.dtype), row.u + size_t(b0) * dtype_size(a.target_dtype), n,
                                a.inv_temperature, ex_row ? ex_row + b0 : nullptr, ey_row ? ey_row + b0 : nullptr);
    return {{pp.mx, pp.sx}, {pp.my, pp.sy}, pp.c};
  }
  load_scaled(row.z, a.dtype, b0, n, a.inv_temperature, x);
  BlockSummary s{block_partial(k, x, n, ex), {0.0f, 0.0}, 0.0};
  const float mx = s.px.m;
  const bool xmasked = mx == kNegInf;
  if (a.target_probs) {
    s.py.s = lane_sum(n, [&](int64_t j) { return q[b0 + j]; });
    if (!xmasked) s.C = lane_sum(n, [&](int64_t j) { return q[b0 + j] == 0.0f ? 0.0f : q[b0 + j] * (mx - x[j]); });
    return s;
  }
  load_scaled(row.u, a.target_dtype, b0, n, a.inv_temperature, y);
  s.py = block_partial(k, y, n, ey);
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
  return s;
}

// A row's loss from its block summaries, folded in block order (the same numbers whichever
// threads computed the blocks).
RowResult finish_row(const SoftArgs& a, const BlockSummary* blocks, size_t nb) {
  Fold fx, fy;
  double qsum = 0.0;
  for (size_t i = 0; i < nb; ++i) {
    fx.add(blocks[i].px.m, blocks[i].px.s);
    if (a.target_probs)
      qsum += blocks[i].py.s;
    else
      fy.add(blocks[i].py.m, blocks[i].py.s);
  }
  const double lse_x = fold_lse(fx);
  if (a.target_probs) {
    double loss = 0.0;
    // Y_b may be negative (negative class weights): every block with a target term adds
    for (size_t i = 0; i < nb; ++i) {
      const BlockSummary& s = blocks[i];
      loss += (s.py.s != 0.0 ? (lse_x - double(s.px.m)) * s.py.s : 0.0) + s.C;
    }
    return {lse_x, qsum, loss * a.loss_factor};
  }
  const double lse_y = fold_lse(fy);
  double acc = 0.0;
  for (size_t i = 0; i < nb; ++i) {
    const BlockSummary& s = blocks[i];
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

// The gradient of one block [b0, b0 + n) of a row (fusedce.h): c = upstream·F/T (F = 1 for KL);
//   probabilities:  g_j = c·(Σq·p_j − q_j)
//   logits:         g_j = c·(p_j − q_j)                       (SoftCrossEntropy, KlForward)
//                   g_j = c·p_j·((x_j − lse_x) − (y_j − lse_y) − L)   (KlReverse; 0 where p_j = 0)
// z (and the target) are widened into buffers before the block's gradient is stored, so g may be
// z itself.   g: the row's (V,) of gdt
void block_grad(const Kernels& k, const SoftArgs& a, const Row& row, char* g, DType gdt, float lse_x, double constant,
                double kl, double c, int64_t b0, int64_t n) {
  BlockBuffers& buf = block_buffers();
  float *x = buf.a, *p = buf.b, *y = buf.c, *q = buf.d;
  const float cf = float(c), lse_y = float(constant), qs = float(constant), L = float(kl);
  const auto* qp = reinterpret_cast<const float*>(row.u);
  const size_t gsz = dtype_size(gdt);
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

double grad_coefficient(const SoftArgs& a, float up) {
  const double f = a.op == SoftOp::CrossEntropy ? a.loss_factor : 1.0;
  return double(up) * f * double(a.inv_temperature);
}

Row row_of(const SoftArgs& a, int64_t r) {
  const size_t V = size_t(a.vocab);
  const size_t tsz = a.target_probs ? 4 : dtype_size(a.target_dtype);
  return {static_cast<const char*>(a.logits) + size_t(r) * V * dtype_size(a.dtype),
          static_cast<const char*>(a.target) + size_t(r) * V * tsz};
}

// A row's target as the kernels read it, and whether it counts. Probabilities with smoothing or
// weights are rewritten into qt ((vocab,) fp32, per row_passes' RowScratch), q̃_j = w_j·((1 − ε)·q_j + ε/V); a row counts when
// its q is not all 0 (whatever q̃ sums to). Everything else is read in place.
struct TargetRow {
  Row row;
  bool empty;  // an all-zero probability row: loss 0, lse 0, gradient 0
};
TargetRow target_row(const SoftArgs& a, int64_t r, float* qt) {
  Row row = row_of(a, r);
  if (!a.target_probs) return {row, false};
  const auto* q = reinterpret_cast<const float*>(row.u);
  bool any = false;
  for (int64_t j = 0; j < a.vocab && !any; ++j) any = q[j] != 0.0f;
  if (!any) return {row, true};
  if (a.label_smoothing == 0.0f && !a.weight) return {row, false};
  const float keep = 1.0f - a.label_smoothing, spread = float(double(a.label_smoothing) / double(a.vocab));
  for (int64_t j = 0; j < a.vocab; ++j) {
    const float v = keep * q[j] + spread;
    qt[j] = a.weight ? a.weight[j] * v : v;
  }
  row.u = reinterpret_cast<const char*>(qt);
  return {row, false};
}

}  // namespace

SoftTotals soft_forward(const SoftArgs& a, const SoftForwardOut& out) {
  const Kernels& k = a.kernels ? *a.kernels : active_kernels();
  CountedRows<1> parts(a.rows);
  const size_t grow = size_t(a.vocab) * dtype_size(out.grad.dtype), gsz = dtype_size(out.grad.dtype);
  const int64_t nb = (a.vocab + kBlock - 1) / kBlock;
  // the one-exp fused gradient from pass 1's exps: teacher logits (every op) and probabilities
  const bool one_exp = out.grad.data && (a.target_probs ? k.partial_probs[int(a.dtype)] && k.scale_sub_store[0]
                                                        : k.pair_grad_store[0] && k.klr_grad_store[0][0][0] &&
                                                              k.partial_pair[int(a.op)][int(a.dtype)][int(a.target_dtype)]);
  const bool keep_ey = one_exp && !a.target_probs;  // the teacher's exps (logit targets only)
  // a gradient past the caches is written with non-temporal stores (the plain path's rule)
  const bool stream = out.grad.data && stream_gradient(a.rows, a.vocab, out.grad.dtype);
  auto grad_of = [&](int64_t r) { return out.grad.data ? static_cast<char*>(out.grad.data) + size_t(r) * grow : nullptr; };
  // Block i of row r's gradient (pass 2), from pass 1's exps in ex/ey (whole-row pointers) when
  // one_exp. Every block's work depends only on the row's result and its own elements.
  auto grad_block = [&](int64_t r, const Row& row, const RowResult& rr, const BlockSummary& bs, int64_t i, const float* ex,
                        const float* ey) {
    char* g = grad_of(r);
    const int64_t b0 = i * kBlock, n = std::min(kBlock, a.vocab - b0);
    const float up = out.grad.row_scale ? out.grad.row_scale[r] : out.grad.scale;
    const double c = grad_coefficient(a, up);
    if (!one_exp) {
      block_grad(k, a, row, g, out.grad.dtype, out.lse[r], rr.constant, rr.loss, c, b0, n);
      return;
    }
    if (!(rr.lse_x > -std::numeric_limits<double>::infinity())) {
      nan_block(g + size_t(b0) * gsz, out.grad.dtype, n);  // no finite logit (or a NaN): p_j = NaN, as the portable pass
      return;
    }
    if (a.target_probs) {
      // g_j = c·(Σq·p_j − q_j) = (c·Σq·e^{mx_b − lse_x})·e_j − c·q_j
      const float cx = float(c * rr.constant * std::exp(double(bs.px.m) - rr.lse_x));
      k.scale_sub_store[int(out.grad.dtype)](ex + b0, g + size_t(b0) * gsz, n, cx, float(c),
                                             reinterpret_cast<const float*>(row.u) + b0, stream);
      return;
    }
    if (a.op == SoftOp::KlReverse) {
      // g_j = c·p_j·((x_j − lse_x) − (y_j − lse_y) − L), p_j = e^x_j·e^{mx_b − lse_x}:
      //     = (c·e^{mx_b − lse_x})·e^x_j·(((x_j − mx_b) − (y_j − my_b)) + k_b),
      //   k_b = (mx_b − lse_x) − (my_b − lse_y) − L in double (each difference small where p is)
      const bool live = bs.px.s > 0.0 || bs.px.s != bs.px.s;
      const double mx = bs.px.m, my = bs.py.m;
      const float cx = live ? float(c * std::exp(mx - rr.lse_x)) : 0.0f;
      const float kb = live ? float((mx - rr.lse_x) - (my - rr.constant) - rr.loss) : 0.0f;
      k.klr_grad_store[int(a.dtype)][int(a.target_dtype)][int(out.grad.dtype)](
          row.z + size_t(b0) * dtype_size(a.dtype), row.u + size_t(b0) * dtype_size(a.target_dtype), ex + b0,
          g + size_t(b0) * gsz, n, a.inv_temperature, live ? float(mx) : 0.0f, live && my == my ? float(my) : 0.0f, kb, cx, stream);
      return;
    }
    // g_j = c·(p_j − q_j) = ex_j·c·e^{mx_b − lse_x} − ey_j·c·e^{my_b − lse_y}, in double per block
    const float ca = float(c * std::exp(double(bs.px.m) - rr.lse_x));
    const float cb = float(c * std::exp(double(bs.py.m) - rr.constant));
    k.pair_grad_store[int(out.grad.dtype)](ex + b0, ey + b0, g + size_t(b0) * gsz, n, ca, cb, stream);
  };
  const bool rewrite = a.target_probs && (a.label_smoothing != 0.0f || a.weight);
  RowScratch<float, 0> qt(a.rows, a.vocab, a.threads, rewrite ? size_t(a.vocab) : 0);
  RowScratch<float, 1> ex(a.rows, a.vocab, a.threads, one_exp ? size_t(a.vocab) : 0);
  RowScratch<float, 2> ey(a.rows, a.vocab, a.threads, keep_ey ? size_t(a.vocab) : 0);
  RowScratch<BlockSummary, 0> blocks(a.rows, a.vocab, a.threads, size_t(nb));
  std::vector<TargetRow> trs(size_t(a.rows));
  std::vector<RowResult> rrs(size_t(a.rows));
  // pass 0: the blocks' summaries (and exps); pass 1: the gradient
  row_passes(
      a.rows, a.vocab, a.threads, out.grad.data ? 2 : 1, [&](int64_t r) { trs[size_t(r)] = target_row(a, r, qt.of(r)); },
      [&](int pass, int64_t r, int64_t i) {
        const TargetRow& tr = trs[size_t(r)];
        const int64_t b0 = i * kBlock, n = std::min(kBlock, a.vocab - b0);
        if (tr.empty) {  // an all-zero probability row counts nowhere, and its gradient is 0
          if (pass == 1) std::memset(grad_of(r) + size_t(b0) * gsz, 0, size_t(n) * gsz);
          return;
        }
        if (pass == 0)
          blocks.of(r)[i] = block_forward(k, a, tr.row, b0, n, ex.of(r), ey.of(r));
        else
          grad_block(r, tr.row, rrs[size_t(r)], blocks.of(r)[i], i, ex.of(r), ey.of(r));
      },
      [&](int pass, int64_t r) {
        if (pass != 0) return;
        if (trs[size_t(r)].empty) {
          out.losses[r] = out.lse[r] = 0.0f;
          return;
        }
        const RowResult& rr = rrs[size_t(r)] = finish_row(a, blocks.of(r), size_t(nb));
        parts.count(r, {rr.loss});
        out.losses[r] = float(rr.loss);
        out.lse[r] = float(rr.lse_x);
      });
  const auto t = parts.totals();
  return {t.sum[0], t.count};
}

// The backward: the target's row constant (lse_y, or Σq, block partials folded in order, as the
// forward's), then the gradient block by block. Few rows split their blocks over the pool.
void soft_backward(const SoftArgs& a, const float* lse, const GradOut& grad) {
  const Kernels& k = a.kernels ? *a.kernels : active_kernels();
  const size_t grow = size_t(a.vocab) * dtype_size(grad.dtype);
  const int64_t nb = (a.vocab + kBlock - 1) / kBlock;
  const bool rewrite = a.target_probs && (a.label_smoothing != 0.0f || a.weight);
  RowScratch<float, 0> qt(a.rows, a.vocab, a.threads, rewrite ? size_t(a.vocab) : 0);
  RowScratch<BlockPartial, 0> tb(a.rows, a.vocab, a.threads, size_t(nb));
  std::vector<TargetRow> trs(size_t(a.rows));
  std::vector<double> constants(size_t(a.rows), 0.0);
  // pass 0: the target's block partials; pass 1: the gradient
  row_passes(
      a.rows, a.vocab, a.threads, 2, [&](int64_t r) { trs[size_t(r)] = target_row(a, r, qt.of(r)); },
      [&](int pass, int64_t r, int64_t i) {
        const TargetRow& tr = trs[size_t(r)];
        const int64_t b0 = i * kBlock, n = std::min(kBlock, a.vocab - b0);
        char* g = static_cast<char*>(grad.data) + size_t(r) * grow;
        if (tr.empty) {
          if (pass == 1) std::memset(g + size_t(b0) * dtype_size(grad.dtype), 0, size_t(n) * dtype_size(grad.dtype));
          return;
        }
        if (pass == 0) {
          tb.of(r)[i] = target_block(k, a, tr.row, b0);
          return;
        }
        const float up = grad.row_scale ? grad.row_scale[r] : grad.scale;
        block_grad(k, a, tr.row, g, grad.dtype, lse[r], constants[size_t(r)], 0.0, grad_coefficient(a, up), b0, n);
      },
      [&](int pass, int64_t r) {
        if (pass == 0 && !trs[size_t(r)].empty) constants[size_t(r)] = fold_target(a, tb.of(r), size_t(nb));
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
using EntropyBlock = std::pair<BlockPartial, double>;  // (m_b, S_b), T_b

// Block [b0, b0 + n) of a row (its exps into e_row + b0 when given). Depends only on its elements.
EntropyBlock entropy_block(const Kernels& k, const char* z, DType dtype, int64_t b0, int64_t n, float inv_temperature,
                           float* e_row) {
  const auto fast = k.partial_entropy[int(dtype)];
  if (fast) {
    const SmoothPartial sp = fast(z + size_t(b0) * dtype_size(dtype), n, inv_temperature, e_row ? e_row + b0 : nullptr);
    const BlockPartial p{sp.m, sp.s};
    return {p, p.s > 0.0 ? sp.q : 0.0};
  }
  BlockBuffers& buf = block_buffers();
  float *x = buf.a, *e = buf.b;
  load_scaled(z, dtype, b0, n, inv_temperature, x);
  const BlockPartial p = block_partial(k, x, n, e);
  const float m = p.m;
  return {p, p.s > 0.0 ? lane_sum(n, [&](int64_t j) { return e[j] == 0.0f ? 0.0f : e[j] * (m - x[j]); }) : 0.0};
}

// The row's lse and H from its blocks, folded in block order.
EntropyRow entropy_fold(const EntropyBlock* blocks, size_t nb) {
  Fold f;
  for (size_t i = 0; i < nb; ++i) f.add(blocks[i].first.m, blocks[i].first.s);
  const double lse = fold_lse(f);
  double H = 0.0;
  for (size_t i = 0; i < nb; ++i) {
    const auto& [p, T] = blocks[i];
    if (p.s > 0.0) H += std::exp(double(p.m) - lse) * ((lse - double(p.m)) * p.s + T);
  }
  return {lse, lse == lse ? H : std::numeric_limits<double>::quiet_NaN()};
}

}  // namespace

void entropy_rows(const void* logits, DType dtype, int64_t rows, int64_t vocab, float inv_temperature, int threads,
                  float* out) {
  const Kernels& k = active_kernels();
  const int64_t nb = (vocab + kBlock - 1) / kBlock;
  const size_t zrow = size_t(vocab) * dtype_size(dtype);
  RowScratch<EntropyBlock, 0> blocks(rows, vocab, threads, size_t(nb));
  row_passes(
      rows, vocab, threads, 1, [](int64_t) {},
      [&](int, int64_t r, int64_t i) {
        const int64_t b0 = i * kBlock;
        blocks.of(r)[i] = entropy_block(k, static_cast<const char*>(logits) + size_t(r) * zrow, dtype, b0,
                                        std::min(kBlock, vocab - b0), inv_temperature, nullptr);
      },
      [&](int, int64_t r) { out[r] = float(entropy_fold(blocks.of(r), size_t(nb)).H); });
}

// The entropy as a loss (fusedce.h): H_i per row, and with a gradient
//   dH/dz_j = (1/T)·dH/dx_j = −(1/T)·p_j·(log p_j + H),   log p_j = x_j − lse
// (0 where p_j = 0). Where the ISA has the entropy's block kernels, pass 1 keeps e_j = exp(x_j − m_b)
// in a scratch row and pass 2 writes, with c_b = exp(m_b − lse) and k_b = m_b − lse + H in double,
//   g_j = −(up/T)·c_b·e_j·((x_j − m_b) + k_b)
// (one exp per element in all; near a one-hot row x_j − m_b and k_b are each small and exact
// enough, where x_j − lse + H would cancel). Elsewhere a second pass takes p_j again by an exp and
// log p_j + H in double. Few rows split their blocks over the pool (row_passes).
double entropy_forward(const void* logits, DType dtype, int64_t rows, int64_t vocab, float inv_temperature, int threads,
                       float* losses, float* lse, const GradOut& grad) {
  const Kernels& k = active_kernels();
  CountedRows<1> parts(rows);
  const size_t zrow = size_t(vocab) * dtype_size(dtype), grow = size_t(vocab) * dtype_size(grad.dtype);
  const size_t gsz = dtype_size(grad.dtype);
  const int64_t nb = (vocab + kBlock - 1) / kBlock;
  const auto fused = grad.data ? k.entropy_grad_store[int(dtype)][int(grad.dtype)] : nullptr;
  const bool one_exp = fused && k.partial_entropy[int(dtype)];
  // a gradient past the caches is written with non-temporal stores (the plain path's rule)
  const bool stream = grad.data && stream_gradient(rows, vocab, grad.dtype);
  // per row: the block sums, and the exps for the one-exp gradient
  RowScratch<EntropyBlock, 0> blocks(rows, vocab, threads, size_t(nb));
  RowScratch<float, 1> exps(rows, vocab, threads, one_exp ? size_t(vocab) : 0);
  std::vector<EntropyRow> er(static_cast<size_t>(rows));
  auto z_of = [&](int64_t r) { return static_cast<const char*>(logits) + size_t(r) * zrow; };
  // block i of row r's gradient, once the row is folded
  auto grad_block = [&](int64_t r, int64_t i) {
    const EntropyRow& e = er[size_t(r)];
    const float up = grad.row_scale ? grad.row_scale[r] : grad.scale;
    const int64_t b0 = i * kBlock, n = std::min(kBlock, vocab - b0);
    char* g = static_cast<char*>(grad.data) + size_t(r) * grow + size_t(b0) * gsz;
    const char* z = z_of(r);
    if (one_exp) {
      // a NaN row, or one without a finite logit (lse −inf): its whole gradient NaN, as p_j = NaN
      // in the portable pass
      if (!(e.lse > -std::numeric_limits<double>::infinity()) || e.H != e.H) {
        nan_block(g, grad.dtype, n);
        return;
      }
      const BlockPartial& bp = blocks.of(r)[i].first;
      const double m = bp.m;
      // a masked block (m = −inf) has e ≡ 0: its gradient is 0 whatever c and k are
      const bool live = bp.s > 0.0 || bp.s != bp.s;
      const float cb = live ? float(-double(up) * double(inv_temperature) * std::exp(m - e.lse)) : 0.0f;
      const float kb = live ? float((m - e.lse) + e.H) : 0.0f;
      fused(z + size_t(b0) * dtype_size(dtype), exps.of(r) + b0, g, n, inv_temperature, live ? float(m) : 0.0f, kb, cb, stream);
      return;
    }
    const float c = -float(double(up) * double(inv_temperature)), L = float(e.lse);
    BlockBuffers& buf = block_buffers();
    float *x = buf.a, *p = buf.b;
    load_scaled(z, dtype, b0, n, inv_temperature, x);  // before the store: g may be z itself
    k.grad[int(DType::F32)][int(DType::F32)](x, p, n, L, 1.0f);  // p = exp(x − lse)
    // log p_j + H in double from the double lse: near a one-hot row both are ~0 and would cancel
    // to noise in fp32 (the fp32 lse alone is off by an ulp of |lse|)
    for (int64_t j = 0; j < n; ++j) p[j] = p[j] == 0.0f ? 0.0f : c * p[j] * float((double(x[j]) - e.lse) + e.H);
    narrow(p, grad.dtype, n, g);
  };
  // pass 0: the blocks' sums (and exps); pass 1: the gradient
  row_passes(
      rows, vocab, threads, grad.data ? 2 : 1, [](int64_t) {},
      [&](int pass, int64_t r, int64_t i) {
        if (pass == 0) {
          const int64_t b0 = i * kBlock;
          blocks.of(r)[i] = entropy_block(k, z_of(r), dtype, b0, std::min(kBlock, vocab - b0), inv_temperature, exps.of(r));
        } else {
          grad_block(r, i);
        }
      },
      [&](int pass, int64_t r) {
        if (pass != 0) return;
        const EntropyRow e = entropy_fold(blocks.of(r), size_t(nb));
        er[size_t(r)] = e;
        parts.count(r, {e.H});
        losses[r] = float(e.H);
        lse[r] = float(e.lse);
      });
  return parts.totals().sum[0];
}

// The generalized Jensen–Shannon divergence (fusedce.h), 0 < β < 1, with p = softmax(y) the
// reference and q = softmax(x) the model (x = z/T, y = u/T), m = β·p + (1 − β)·q:
//   loss = β·Σ p_j·log(p_j/m_j) + (1 − β)·Σ q_j·log(q_j/m_j)
//   dloss/dq_j = (1 − β)·log(q_j/m_j), so dloss/dx_j = (1 − β)·q_j·(log(q_j/m_j) − KL(q‖m))
// Pass 1 finds both lse's (the pair kernel of soft CE where the ISA has one: both rows' block
// maxima and sums in one read); pass 2 computes each element's term from p, q and m, keeping q_j
// and log(q_j/m_j) in scratch rows when the gradient is asked; pass 3 writes it. The terms are
// fp32, as sums of non-negative parts (loss_rows.cpp, jsd_terms_f32: two exps, one log and two
// divisions per element), added in double lanes. Weights below the smallest normal float (~1.2e-38)
// take the double loop (jsd_terms). A term with p_j = q_j = 0 adds 0.
double jsd_forward(const SoftArgs& a, double beta, float* losses, float* lse, const GradOut& grad) {
  const Kernels& k = a.kernels ? *a.kernels : active_kernels();
  CountedRows<1> parts(a.rows);
  const size_t grow = size_t(a.vocab) * dtype_size(grad.dtype);
  const int64_t nb = (a.vocab + kBlock - 1) / kBlock;
  // the fp32 terms while both weights are normal floats (below that, their products with p and q
  // would be subnormal or 0)
  const bool f32 = float(beta) >= std::numeric_limits<float>::min() && float(1.0 - beta) >= std::numeric_limits<float>::min();
  const auto pair = a.target_probs ? nullptr : k.partial_pair[int(SoftOp::KlForward)][int(a.dtype)][int(a.target_dtype)];
  struct JsdBlock {
    BlockPartial px, py;  // pass 0
    double term, kl;      // pass 1: Σ terms, Σ q·log(q/m)
  };
  struct JsdRow {
    double lx, ly, klqm;
    JsdConsts c;
  };
  RowScratch<JsdBlock, 0> blocks(a.rows, a.vocab, a.threads, size_t(nb));
  // q_j and log(q_j/m_j) for the gradient (fp32; double on the extreme-β path)
  const size_t keep = grad.data ? size_t(a.vocab) : 0;
  RowScratch<float, 0> qrow(a.rows, a.vocab, a.threads, f32 ? keep : 0);
  RowScratch<float, 1> lrow(a.rows, a.vocab, a.threads, f32 ? keep : 0);
  RowScratch<double, 0> qrow64(a.rows, a.vocab, a.threads, f32 ? 0 : keep);
  RowScratch<double, 1> lrow64(a.rows, a.vocab, a.threads, f32 ? 0 : keep);
  std::vector<JsdRow> jr(size_t(a.rows));
  // pass 0: both rows' block partials; pass 1: the terms; pass 2: the gradient
  row_passes(
      a.rows, a.vocab, a.threads, grad.data ? 3 : 2, [](int64_t) {},
      [&](int pass, int64_t r, int64_t i) {
        const Row row = row_of(a, r);
        BlockBuffers& buf = block_buffers();
        float *x = buf.a, *ex = buf.b, *y = buf.c, *ey = buf.d;
        const int64_t b0 = i * kBlock, n = std::min(kBlock, a.vocab - b0);
        JsdBlock& jb = blocks.of(r)[i];
        const JsdRow& rw = jr[size_t(r)];
        if (pass == 2) {
          const float up = grad.row_scale ? grad.row_scale[r] : grad.scale;
          char* g = static_cast<char*>(grad.data) + size_t(r) * grow + size_t(b0) * dtype_size(grad.dtype);
          if (f32) {
            jsd_grad_f32(qrow.of(r) + b0, lrow.of(r) + b0, n, float(double(up) * (1.0 - beta) * double(a.inv_temperature)),
                         float(rw.klqm), x);
          } else {
            const double c = double(up) * (1.0 - beta) * double(a.inv_temperature);
            const double *qr = qrow64.of(r) + b0, *lr = lrow64.of(r) + b0;
            for (int64_t j = 0; j < n; ++j) x[j] = qr[j] == 0.0 ? 0.0f : float(c * qr[j] * (lr[j] - rw.klqm));
          }
          narrow(x, grad.dtype, n, g);
          return;
        }
        if (pass == 0 && pair) {
          const PairPartial pp = pair(row.z + size_t(b0) * dtype_size(a.dtype), row.u + size_t(b0) * dtype_size(a.target_dtype), n,
                                      a.inv_temperature, nullptr, nullptr);
          jb.px = {pp.mx, pp.sx};
          jb.py = {pp.my, pp.sy};
          return;
        }
        if (f32 && pass == 1) {
          // the logits unscaled: the terms take (z − u)/T with one rounding
          widen(row.z + size_t(b0) * dtype_size(a.dtype), a.dtype, n, x);
          widen(row.u + size_t(b0) * dtype_size(a.target_dtype), a.target_dtype, n, y);
          float* term = buf.b;
          float* q = grad.data ? qrow.of(r) + b0 : nullptr;
          float* l = grad.data ? lrow.of(r) + b0 : nullptr;
          jsd_terms_f32(k, x, y, n, a.inv_temperature, rw.c, term, q, l);
          jb.term = lane_sum_f64(n, [&](int64_t j) { return term[j]; });
          jb.kl = q ? lane_sum_f64(n, [&](int64_t j) { return q[j] * l[j]; }) : 0.0;
          return;
        }
        load_scaled(row.z, a.dtype, b0, n, a.inv_temperature, x);
        load_scaled(row.u, a.target_dtype, b0, n, a.inv_temperature, y);
        if (pass == 0) {
          jb.px = block_partial(k, x, n, ex);
          jb.py = block_partial(k, y, n, ey);
          return;
        }
        thread_local std::vector<double> term, kl;
        term.resize(size_t(kBlock));
        kl.resize(size_t(kBlock));
        jsd_terms(x, y, n, rw.lx, rw.ly, beta, term.data(), kl.data(), grad.data ? qrow64.of(r) + b0 : nullptr,
                  grad.data ? lrow64.of(r) + b0 : nullptr);
        jb.term = lane_sum_f64(n, [&](int64_t j) { return term[size_t(j)]; });
        jb.kl = lane_sum_f64(n, [&](int64_t j) { return kl[size_t(j)]; });
      },
      [&](int pass, int64_t r) {
        const JsdBlock* bl = blocks.of(r);
        JsdRow& row = jr[size_t(r)];
        if (pass == 0) {
          Fold fx, fy;
          for (int64_t i = 0; i < nb; ++i) {
            fx.add(bl[i].px.m, bl[i].px.s);
            fy.add(bl[i].py.m, bl[i].py.s);
          }
          row.lx = fold_lse(fx);
          row.ly = fold_lse(fy);
          const float lxh = float(row.lx), lyh = float(row.ly);
          row.c = {float(beta), float(1.0 - beta), lxh, float(row.lx - double(lxh)), lyh, float(row.ly - double(lyh)),
                   float(row.lx - row.ly)};
        } else if (pass == 1) {
          double loss = 0.0, klqm = 0.0;
          for (int64_t i = 0; i < nb; ++i) {
            loss += bl[i].term;
            klqm += bl[i].kl;
          }
          if (row.lx != row.lx || row.ly != row.ly) loss = std::numeric_limits<double>::quiet_NaN();
          row.klqm = klqm;
          parts.count(r, {loss});
          losses[r] = float(loss);
          lse[r] = float(row.lx);
        }
      });
  return parts.totals().sum[0];
}

}  // namespace fusedce
