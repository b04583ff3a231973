// Cross-entropy with options, CPU: label smoothing, class weights, z-loss, logit scale, softcap and
// fused eval statistics. The math (and torch's semantics) is in fusedce.h above CeOptions.
//
// Two routes. Options that keep plain CE's per-element work — class weights, z-loss, focal, logit
// scale and label smoothing, without softcap or statistics — run on the plain driver and its
// kernels (cross_entropy.cpp, PlainOptHook): per-row constants after the fold, and for smoothing
// two more sums in the exp loop (Kernels::partial_smooth), where the ISA has those kernels (AVX-512,
// AVX2). Everything else (softcap, statistics, and every option on the portable kernels) runs the
// general loops below:
//
// Reads and writes, per counted row:
//   forward            reads z once (each block widened into an L1 buffer, transformed, one exp per
//                      element), writes loss_i, lse_i and the asked-for statistics.
//   forward + grad     the forward keeps e_j = exp(x_j − m_b) (and dx/dz) in a scratch row (L2
//                      resident for realistic vocabularies), and the gradient is written from it:
//                      one exp per element, z read once. It uses the double lse, so it agrees with
//                      the separate backward (from the fp32 lse) to rounding, not bitwise.
//                      Vocabularies over 2^20 take two passes from the fp32 lse instead.
//   backward           reads z once, writes the gradient row once.
// Every quantity that is a difference of large terms is rewritten as a sum of non-negative ones,
// taken relative to each block's max m_b (x_j ≤ m_b ≤ lse):
//   Σ_j w_j·(lse − x_j)  = Σ_b [W_b·(lse − m_b) + Σ_{j∈b} w_j·(m_b − x_j)]
//   H = Σ_j p_j·(lse − x_j) = Σ_b e^{m_b − lse}·[(lse − m_b)·S_b + Σ_{j∈b} e_j·(m_b − x_j)]
// with e_j = exp(x_j − m_b), S_b = Σ_{j∈b} e_j, W_b = Σ_{j∈b} w_j. The target stays out of the
// block sums (its block is split around it) and lse − x_t = log1p(S≠t/e_t), as in the plain path.
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

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// x = s·z, then x ← c·tanh(x/c). With `d`, also d = dx/dz = s·(1 − tanh²(s·z/c)) (s without softcap).
// tanh is tanh_block (≤ 3 ulp, vectorised); t: (n,) scratch.
struct Transform {
  float s, c;  // c = 0: no softcap
  void apply(const Kernels& k, float* x, int64_t n, float* t, float* d = nullptr) const {
    scale_softcap_block(k, x, n, s, c, t, d);
  }
  bool identity() const { return s == 1.0f && c == 0.0f; }
};

// One piece's pass-1 summary (see the file comment).
struct OptPiece {
  float m;        // m_b
  double S;       // Σ e_j
  double W;       // Σ w_j over the piece
  double Q;       // Σ w_j·(m_b − x_j)          (label smoothing)
  double T;       // Σ e_j·(m_b − x_j)          (entropy)
  int64_t off, n; // where the piece lies in the row
};

struct RowOut {
  double lse, ce, zl;
  double entropy, target_logprob, max_prob;
  int64_t argmax;
  double nll = 0.0;  // lse − x_t
};

float load_x(const Kernels& k, const char* z, DType dt, int64_t j, const Transform& tf, float* d = nullptr) {
  float x = 0.0f, t;
  widen(z + size_t(j) * dtype_size(dt), dt, 1, &x);
  tf.apply(k, &x, 1, &t, d);
  return x;
}

// Pass 1 over a counted row: lse, ce_i, zl_i and (Stats) the eval statistics. With e_row, also
// keeps e_j = exp(x_j − m_b) there, and with d_row dx_j/dz_j, for the fused gradient.
//   z: (V,) of dt; t: the target, in [0, V); e_row, d_row: (V,) fp32 scratch or nullptr
template <bool Smooth, bool Stats>
RowOut row_forward_opt(const Kernels& k, const char* z, DType dt, int64_t vocab, int64_t t, const CeOptions& o,
                       const Transform& tf, std::vector<OptPiece>& pcs, float* e_row = nullptr,
                       float* d_row = nullptr) {
  BlockBuffers& buf = block_buffers();
  float* x = buf.a;
  const size_t esz = dtype_size(dt);
  const float* w = o.weight;
  pcs.clear();
  Fold f;
  // softcap without smoothing or statistics (which read x afterwards): the ISA's one-loop block,
  // the general loops below only for a block it does not take (some |s·z/c| ≥ 0.55)
  const auto capk = !Smooth && !Stats && tf.c > 0.0f ? k.partial_softcap[int(dt)] : nullptr;
  for_each_piece(vocab, t, [&](int64_t off, int64_t n) {
    float* const e = e_row ? e_row + off : buf.b;
    if (capk) {
      const CapPartial cp = capk(z + size_t(off) * esz, n, tf.s, tf.c, e_row ? e : nullptr, d_row ? d_row + off : nullptr);
      if (!cp.far) {
        f.add(cp.m, double(cp.s));
        pcs.push_back(OptPiece{cp.m, double(cp.s), 0.0, 0.0, 0.0, off, n});
        return;
      }
    }
    widen(z + size_t(off) * esz, dt, n, x);
    tf.apply(k, x, n, buf.c, d_row ? d_row + off : nullptr);
    // (m_b, S_b) by the ISA's fused block kernel (fp32 lanes, as the plain path); with Stats or a
    // scratch row also e_j = exp(x_j − m_b), for the entropy's T_b and the fused gradient
    const Partial p = Stats || e_row ? k.partial_store[int(DType::F32)](x, n, e) : k.partial[int(DType::F32)](x, n);
    OptPiece pc{p.m, double(p.s), 0.0, 0.0, 0.0, off, n};
    if (Smooth) pc.W = w ? lane_sum(n, [&](int64_t j) { return w[off + j]; }) : double(n);
    if (p.s != p.s) {
      pc.S = kNaN;
    } else if (pc.m == -std::numeric_limits<float>::infinity()) {
      if (Smooth) pc.Q = pc.W > 0.0 ? kInf : 0.0;  // log p_j = −inf for every j of the piece
    } else {
      const float m = pc.m;
      if (Smooth)
        pc.Q = w ? lane_sum(n, [&](int64_t j) { return w[off + j] * (m - x[j]); })
                 : lane_sum(n, [&](int64_t j) { return m - x[j]; });
      if (Stats) pc.T = lane_sum(n, [&](int64_t j) { return e[j] * (m - x[j]); });
    }
    f.add(pc.m, pc.S);
    pcs.push_back(pc);
  });
  const float xt = load_x(k, z, dt, t, tf);
  const RowForward rf = finish(f, xt);
  const double lse = rf.lse, nll = rf.loss;  // nll = lse − x_t
  const double wt = w ? double(w[t]) : 1.0;
  RowOut out{lse, wt * nll, double(o.z_loss) * lse * lse, 0.0, 0.0, 0.0, -1, nll};
  if (o.focal_gamma > 0.0f) out.ce *= focal_factors(o.focal_gamma, nll).loss;
  if (Smooth) {
    const double eps = o.label_smoothing;
    double smooth = wt * nll;  // Σ_j w_j·(lse − x_j), the target's term first, then the pieces'
    for (const OptPiece& pc : pcs)
      smooth += pc.m == -std::numeric_limits<float>::infinity() ? pc.Q : pc.W * (lse - double(pc.m)) + pc.Q;
    out.ce = (1.0 - eps) * wt * nll + eps / double(vocab) * smooth;
  }
  if (Stats) {
    if (lse != lse) {
      out.entropy = out.target_logprob = out.max_prob = kNaN;
      return out;
    }
    double H = nll < kInf ? std::exp(-nll) * nll : 0.0;  // the target's p_t·(lse − x_t)
    // argmax: the largest of the pieces' maxima and x_t; its first index is found afterwards by
    // scanning the first piece that holds it (pieces are in index order), not every piece
    double best = xt;
    const OptPiece* first = nullptr;
    for (const OptPiece& pc : pcs) {
      if (pc.S > 0.0) H += std::exp(double(pc.m) - lse) * ((lse - double(pc.m)) * pc.S + pc.T);
      if (pc.S > 0.0 && double(pc.m) > best) best = pc.m;
    }
    for (const OptPiece& pc : pcs)
      if (pc.S > 0.0 && double(pc.m) == best) {
        first = &pc;
        break;
      }
    int64_t arg = double(xt) == best ? t : -1;
    if (first && (arg < 0 || first->off < t)) {
      widen(z + size_t(first->off) * esz, dt, first->n, x);
      tf.apply(k, x, first->n, buf.c);
      for (int64_t j = 0; j < first->n; ++j)
        if (double(x[j]) == best) {
          if (arg < 0 || first->off + j < arg) arg = first->off + j;
          break;
        }
    }
    out.entropy = H;
    out.target_logprob = -nll;
    out.max_prob = std::exp(best - lse);
    out.argmax = arg;
  }
  return out;
}

// The gradient of one counted row (fusedce.h, CeOptions):
//   g_j = (A·p_j − β·w_j)·d_j  (j ≠ t),   A = α + β·W + γ,
//   α = a·(1 − ε)·w_t,  β = a·ε/V,  γ = b·2c·lse,  d_j = dx_j/dz_j
//   g_t = (A·p_t − α − β·w_t)·d_t = (β·(W − w_t) + γ − A·Σ_{j≠t} p_j)·d_t
// The last form keeps p_t − 1 out of the arithmetic (it cancels when p_t → 1; see row_grad in
// cross_entropy.cpp). GradRow holds a row's constants and stores its pieces; the two drivers
// below differ only in where p_j comes from.
struct GradRow {
  const float* w;
  double A, beta, target;  // target = β·(W − w_t) + γ
  float bf;                // β in fp32
  GradRow(const CeOptions& o, int64_t vocab, int64_t t, double lse, double a, double b, double nll) : w(o.weight) {
    const double wt = w ? double(w[t]) : 1.0;
    // the focal factor κ scales the whole row (focal excludes smoothing and z-loss)
    const double alpha = a * (1.0 - double(o.label_smoothing)) * wt * focal_factors(o.focal_gamma, nll).grad;
    const double gamma = b * 2.0 * double(o.z_loss) * lse;
    beta = a * double(o.label_smoothing) / double(vocab);
    A = alpha + beta * o.weight_total + gamma;
    target = beta * (o.weight_total - wt) + gamma;
    bf = float(beta);
  }
  // v[j] = (c·e[j] − β·w_{off+j})·d[j] (d nullptr: 1; the first product and difference one FMA
  // with weights), narrowed into g's piece at off; c·e[j] is A·p_j. By the ISA's store where it has
  // one (stream: non-temporal stores), else through v, which may be e.
  //   e, d, v: (n,) fp32; g: (V,) of gdt
  void store(const Kernels& k, const float* e, float c, const float* d, int64_t off, int64_t n, float* v, char* g,
             DType gdt, bool stream) const {
    const float* wp = w && bf != 0.0f ? w + off : nullptr;
    char* gp = g + size_t(off) * dtype_size(gdt);
    if (const auto st = k.scale_sub_mul_store[int(gdt)]) st(e, d, gp, n, c, bf, wp, stream);
    else sub_mul_store_block(e, d, wp, n, c, bf, v, gdt, gp);
  }
  // g_t = A·p_t − (A − target), from others = Σ_{j≠t} p_j (p_t = 1 − others, no cancellation when
  // p_t → 1), or, given p_t < 0.5, from p_t itself: the separate backward's p_j all carry the fp32
  // lse's rounding (~|lse|·2⁻²⁴ relative), so 1 − others would be off by A·|lse|·2⁻²⁴, a large
  // error where A·p_t and A − target nearly cancel (smoothing with a target weight much below Σw/V).
  void store_target(char* g, DType gdt, int64_t t, double others, float d_t, double pt = -1.0) const {
    const double gd = pt >= 0.0 && pt < 0.5 ? A * pt - (A - target) : target - A * others;
    const float gt = float(gd * double(d_t));
    narrow(&gt, gdt, 1, g + size_t(t) * dtype_size(gdt));
  }
};

// The gradient from the fp32 lse, re-reading z: p_j = exp(x_j − lse) by the ISA's grad kernel.
// z_t is read before any of the row is written (in place is safe: each piece is widened into a
// buffer before its gradient is stored).
//   z: (V,) of dt; g: (V,) of gdt; t in [0, V)
void row_grad_opt(const Kernels& k, const char* z, DType dt, char* g, DType gdt, int64_t vocab, int64_t t,
                  float lse, double a, double b, const CeOptions& o, const Transform& tf, bool stream) {
  BlockBuffers& buf = block_buffers();
  float *x = buf.a, *e = buf.b, *d = buf.c, *scratch = buf.d;
  const size_t esz = dtype_size(dt);
  float dt_t;
  const float xt = load_x(k, z, dt, t, tf, &dt_t);
  double nll = double(lse) - double(xt);
  // Focal near p_t = 1: the factor κ(nll) amplifies an error in nll by about γ/nll, and the fp32
  // lse carries one of |lse|·2⁻²⁴, so where γ/nll > 1 the row's lse is taken again in double, by
  // the forward's own pass (one more exp per element; the same nll as the fused gradient's).
  if (o.focal_gamma > 0.0f && nll < double(o.focal_gamma)) {
    thread_local std::vector<OptPiece> pcs;
    nll = row_forward_opt<false, false>(k, z, dt, vocab, t, o, tf, pcs).nll;
  }
  const GradRow gr(o, vocab, t, double(lse), a, b, nll);
  const float Af = float(gr.A);
  double others = 0.0;
  const bool ident = tf.identity();
  for_each_piece(vocab, t, [&](int64_t off, int64_t n) {
    widen(z + size_t(off) * esz, dt, n, x);
    tf.apply(k, x, n, scratch, ident ? nullptr : d);
    others += double(k.grad[int(DType::F32)][int(DType::F32)](x, e, n, lse, 1.0f));  // e = p, Σ p in fp32 lanes
    gr.store(k, e, Af, ident ? nullptr : d, off, n, e, g, gdt, stream);
  });
  gr.store_target(g, gdt, t, others, dt_t, std::exp(double(xt) - double(lse)));
}

// The fused gradient from pass 1's scratch, one exp per element in all: with c_b = exp(m_b − lse)
// (double lse), p_j = e_j·c_b and Σ_{j≠t} p_j = Σ_b S_b·c_b. It uses the double lse, so it is more
// accurate than (and not bitwise) the separate backward, which starts from the fp32 lse. z is not
// read here (in place is safe).
//   e_row, d_row: (V,) from pass 1 (d_row nullptr: d ≡ 1); g: (V,) of gdt
void row_grad_fused(const Kernels& k, const std::vector<OptPiece>& pcs, const float* e_row, const float* d_row, char* g,
                    DType gdt, int64_t vocab, int64_t t, double lse, double nll, float d_t, double a, double b,
                    const CeOptions& o, bool stream) {
  float* v = block_buffers().a;
  const GradRow gr(o, vocab, t, lse, a, b, nll);
  double others = 0.0;
  for (const OptPiece& pc : pcs) {
    const double cb = std::exp(double(pc.m) - lse);  // 0 for a masked piece, NaN for a NaN row
    others += pc.S * cb;
    gr.store(k, e_row + pc.off, float(gr.A * cb), d_row ? d_row + pc.off : nullptr, pc.off, pc.n, v, g, gdt, stream);
  }
  gr.store_target(g, gdt, t, others, d_t);
}

// Vocabularies up to this size take the one-exp fused gradient (8 MB of scratch per thread at
// most); larger ones the two-pass gradient from the fp32 lse.
constexpr int64_t kFusedOptMaxVocab = int64_t(1) << 20;

float upstream(const GradOut& g, int64_t r) { return g.row_scale ? g.row_scale[r] : g.scale; }

template <bool Smooth, bool Stats>
ForwardOptTotals forward_opt(const Kernels& k, const ForwardOptArgs& a) {
  const Batch& b = a.base.batch;
  const GradOut& grad = a.base.grad;
  const Transform tf{a.opt.logit_scale, a.opt.softcap};
  const size_t zrow = size_t(b.vocab) * dtype_size(b.dtype), grow = size_t(b.vocab) * dtype_size(grad.dtype);
  const auto* zb = static_cast<const char*>(b.logits);
  auto* gb = static_cast<char*>(grad.data);
  const bool stream = gb && stream_gradient(b.rows, b.vocab, grad.dtype);
  CountedRows<2> parts(b.rows);  // (ce_i, zl_i)
  for_each_row(b.rows, b.vocab, b.threads, [&](int64_t r) {
    thread_local std::vector<OptPiece> pcs;
    {
      const int32_t t = b.targets[r];
      const char* z = zb + size_t(r) * zrow;
      char* g = gb ? gb + size_t(r) * grow : nullptr;
      if (t == b.ignore_index) {
        a.base.losses[r] = a.base.lse[r] = 0.0f;
        if (Stats) {
          if (a.stats.argmax) a.stats.argmax[r] = -1;
          if (a.stats.entropy) a.stats.entropy[r] = 0.0f;
          if (a.stats.target_logprob) a.stats.target_logprob[r] = 0.0f;
          if (a.stats.max_prob) a.stats.max_prob[r] = 0.0f;
        }
        if (g) std::memset(g, 0, grow);
        return;
      }
      thread_local std::vector<float> e_row, d_row;
      const bool fused = g && b.vocab <= kFusedOptMaxVocab;
      if (fused) {
        if (e_row.size() < size_t(b.vocab)) e_row.resize(size_t(b.vocab));
        if (!tf.identity() && d_row.size() < size_t(b.vocab)) d_row.resize(size_t(b.vocab));
      }
      float* const dr = fused && !tf.identity() ? d_row.data() : nullptr;
      float d_t = 1.0f;
      if (fused) load_x(k, z, b.dtype, t, tf, &d_t);  // before any of the row is written (in place)
      const RowOut ro = row_forward_opt<Smooth, Stats>(k, z, b.dtype, b.vocab, t, a.opt, tf, pcs,
                                                       fused ? e_row.data() : nullptr, dr);
      parts.count(r, {ro.ce, ro.zl});
      a.base.losses[r] = float(ro.ce + ro.zl);
      if (a.base.losses64) a.base.losses64[r] = ro.ce + ro.zl;
      a.base.lse[r] = float(ro.lse);
      if (Stats) {
        if (a.stats.argmax) a.stats.argmax[r] = int32_t(ro.argmax);
        if (a.stats.entropy) a.stats.entropy[r] = float(ro.entropy);
        if (a.stats.target_logprob) a.stats.target_logprob[r] = float(ro.target_logprob);
        if (a.stats.max_prob) a.stats.max_prob[r] = float(ro.max_prob);
      }
      if (g) {
        const double up = upstream(grad, r);
        if (fused)
          row_grad_fused(k, pcs, e_row.data(), dr, g, grad.dtype, b.vocab, t, ro.lse, ro.nll, d_t, up * a.norm.ce,
                         up * a.norm.z, a.opt, stream);
        else
          row_grad_opt(k, z, b.dtype, g, grad.dtype, b.vocab, t, a.base.lse[r], up * a.norm.ce, up * a.norm.z, a.opt, tf,
                       stream);
      }
    }
  });
  const auto tot = parts.totals();
  return {tot.sum[0], tot.sum[1]};
}

}  // namespace

ForwardOptTotals cross_entropy_forward_opt(const ForwardOptArgs& a) {
  if (plain_opt_applies(a)) return cross_entropy_forward_plain_opt(a);
  const Kernels& k = a.base.batch.kernels ? *a.base.batch.kernels : active_kernels();
  const bool smooth = a.opt.label_smoothing > 0.0f;
  const bool stats = a.stats.argmax || a.stats.entropy || a.stats.target_logprob || a.stats.max_prob;
  if (smooth) return stats ? forward_opt<true, true>(k, a) : forward_opt<true, false>(k, a);
  return stats ? forward_opt<false, true>(k, a) : forward_opt<false, false>(k, a);
}

void cross_entropy_backward_opt(const BackwardArgs& a, const CeOptions& opt, CeNorm norm) {
  const Batch& b = a.batch;
  const Kernels& k = b.kernels ? *b.kernels : active_kernels();
  const Transform tf{opt.logit_scale, opt.softcap};
  const size_t zrow = size_t(b.vocab) * dtype_size(b.dtype), grow = size_t(b.vocab) * dtype_size(a.grad.dtype);
  const auto* zb = static_cast<const char*>(b.logits);
  auto* gb = static_cast<char*>(a.grad.data);
  const bool stream = stream_gradient(b.rows, b.vocab, a.grad.dtype);
  for_each_row(b.rows, b.vocab, b.threads, [&](int64_t r) {
    const int32_t t = b.targets[r];
    char* g = gb + size_t(r) * grow;
    if (t == b.ignore_index) {
      std::memset(g, 0, grow);
      return;
    }
    const double up = upstream(a.grad, r);
    row_grad_opt(k, zb + size_t(r) * zrow, b.dtype, g, a.grad.dtype, b.vocab, t, a.lse[r], up * norm.ce, up * norm.z,
                 opt, tf, stream);
  });
}

}  // namespace fusedce
