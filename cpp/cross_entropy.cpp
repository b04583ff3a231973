// Cross-entropy row driver: splits the batch over threads, cuts each row into fixed kBlock
// blocks, calls one ISA's block kernels and merges their partials. Shared by every CPU ISA.
//
// Determinism: a row is always cut the same way and its partials merged in block order, and the
// batch sum is taken in row order after all rows are done; which thread ran which row never
// changes a bit of the result.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "dtype.h"
#include "fusedce.h"
#include "row_math.h"
#include "thread_pool.h"

namespace fusedce {
namespace {

void zero_row(void* g, DType gdt, int64_t vocab) { std::memset(g, 0, size_t(vocab) * dtype_size(gdt)); }

void store_one(void* g, DType gdt, int64_t j, float v) {
  switch (gdt) {
    case DType::F32: static_cast<float*>(g)[j] = v; break;
    case DType::F16: static_cast<uint16_t*>(g)[j] = float_to_f16(v); break;
    case DType::BF16: static_cast<uint16_t*>(g)[j] = float_to_bf16(v); break;
  }
}

// One piece of a row (see for_each_piece) and its partial; with label smoothing also
// q = Σ_j w_j·(m − x_j) and wsum = Σ_j w_j over it (Kernels::partial_smooth).
struct Piece {
  int64_t off, n;
  Partial p;
  double q = 0.0, wsum = 0.0;
};

// The block kernels of a pass on x = s·z: the ISA's plain kernels at s = 1, its scaled ones
// otherwise (the product rounded to fp32 before anything else, as the options path computes x),
// and with smooth its label-smoothing kernels (weights w, or nullptr for w ≡ 1). Built only where
// the ISA has the kernels asked for (available).
struct InKernels {
  const Kernels& k;
  float s;
  bool smooth = false;
  const float* w = nullptr;  // (vocab,) class weights for the smoothing sums
  static bool available(const Kernels& k, float s, bool smooth) {
    if (smooth) return k.partial_smooth[0] && k.scale_sub_store[0];
    return s == 1.0f || (k.partial_scaled[0] && k.partial_store_scaled[0]);
  }
  // Pass 1 over piece (off, n) of row zr: its partial, and with e (the piece's scratch) its exps.
  Piece run(DType dt, const char* zr, int64_t off, int64_t n, float* e) const {
    const void* z = zr + size_t(off) * dtype_size(dt);
    if (smooth) {
      const SmoothPartial sp = k.partial_smooth[int(dt)](z, n, s, w ? w + off : nullptr, e);
      return {off, n, {sp.m, float(sp.s)}, sp.q, sp.wsum};
    }
    if (e) return {off, n, s == 1.0f ? k.partial_store[int(dt)](z, n, e) : k.partial_store_scaled[int(dt)](z, n, e, s)};
    return {off, n, s == 1.0f ? k.partial[int(dt)](z, n) : k.partial_scaled[int(dt)](z, n, s)};
  }
  // run with scratch e and, inside its loop, a pending span written; false where the ISA has no
  // such kernel (the caller then writes the span itself)
  bool run_write(DType dt, DType gdt, const char* zr, int64_t off, int64_t n, float* e, const Kernels::Pending& w,
                 Piece* out) const {
    const void* z = zr + size_t(off) * dtype_size(dt);
    if (smooth) {
      // (a pending row with beta 0 is written by scale_store, as store() does)
      const auto smw = k.partial_smooth_write[int(dt)][int(gdt)];
      if (!smw || w.beta == 0.0f) return false;
      const SmoothPartial sp = smw(z, n, s, this->w ? this->w + off : nullptr, e, w);
      *out = {off, n, {sp.m, float(sp.s)}, sp.q, sp.wsum};
      return true;
    }
    const auto psw = s == 1.0f ? k.partial_store_write[int(dt)][int(gdt)] : nullptr;
    const auto psws = s == 1.0f ? nullptr : k.partial_store_write_scaled[int(dt)][int(gdt)];
    if (!psw && !psws) return false;
    *out = {off, n, psw ? psw(z, n, e, w) : psws(z, n, e, w, s)};
    return true;
  }
  // Pass 2 of piece (off, n): g = e·c − beta·w (scale_store when beta = 0).
  void store(DType gdt, const float* e, void* g, int64_t off, int64_t n, float c, float beta, bool stream) const {
    if (beta == 0.0f) k.scale_store[int(gdt)](e, g, n, c, stream);
    else k.scale_sub_store[int(gdt)](e, g, n, c, beta, w ? w + off : nullptr, stream);
  }
};

// The pieces of one counted row (its own thread's vector, reused) and its RowForward.
RowForward row_forward(const InKernels& k, const char* z /* (V,) */, DType dt, int64_t vocab, int64_t t, float xt,
                       std::vector<Piece>& pcs) {
  pcs.clear();
  Fold f;
  for_each_piece(vocab, t, [&](int64_t off, int64_t n) {
    pcs.push_back(k.run(dt, z, off, n, nullptr));
    f.add(pcs.back().p);
  });
  return finish(f, xt);
}

// Vocabularies up to this size take the one-exp fused path (4 MB of fp32 scratch per thread).
constexpr int64_t kFusedMaxVocab = int64_t(1) << 20;
// Whether a forward takes the one-exp fused path: a gradient is asked for and the row fits.
bool fuses(const Batch& b, const GradOut& g) { return g.data && b.vocab <= kFusedMaxVocab; }

int effective_threads(const Batch& b) { return std::max(1, std::min(b.threads, hardware_threads())); }

// Row addressing shared by both directions (64-bit offsets).
struct Rows {
  const char* z;
  char* g;
  size_t zrow, grow;  // bytes per row
  const char* zr(int64_t r) const { return z + size_t(r) * zrow; }
  char* gr(int64_t r) const { return g + size_t(r) * grow; }
};
Rows rows_of(const Batch& b, const GradOut& grad) {
  return {static_cast<const char*>(b.logits), static_cast<char*>(grad.data), size_t(b.vocab) * dtype_size(b.dtype),
          size_t(b.vocab) * dtype_size(grad.dtype)};
}


// What a counted row's gradient is, once its lse is known:
//   g_j = p_j · scale (j ≠ t),   g_t = add − scale · Σ_{j≠t} p_j
// Plain CE has add = 0 (g_t = (p_t − 1)·scale); the options that keep its per-element work
// (class weights, z-loss, focal, logit scale: PlainOptHook below) have their own scale and add.
//   (and with label smoothing, − beta·w_j in every g_j ≠ g_t: beta is β·s of PlainOptHook)
struct RowCoef {
  double scale, add;
  float beta = 0.0f;
};
// The target element from the others' probability sum (−0 kept for plain rows, as before).
float target_grad(const RowCoef& c, double others) {
  return c.add == 0.0 ? float(-others * c.scale) : float(c.add - others * c.scale);
}

// The fused path's middle step, once a row's piece partials are known (in piece order):
// lse and loss as in row_forward, then the row's coefficients coef(rf), and per piece
// c_b = exp(m_b − lse) · scale in double, so that
//   g_j = e_j · c_b  (= p_j · scale, e_j = exp(x_j − m_b) from the scratch),
//   g_t = add − Σ_b s_b · exp(m_b − lse) · scale  (returned in *gt).
// A NaN row gives NaN c_b; a fully masked piece c_b = 0.
template <class CoefFn>
RowForward fused_fold(const Piece* pcs, size_t count, float zt, CoefFn&& coef, float* c, float* gt, float* beta) {
  Fold f;
  for (size_t i = 0; i < count; ++i) f.add(pcs[i].p);
  const RowForward rf = finish(f, zt);
  const RowCoef rc = coef(rf);
  *beta = rc.beta;
  double others = 0.0;
  for (size_t i = 0; i < count; ++i) {
    const double cb = std::exp(double(pcs[i].p.m) - rf.lse);
    others += double(pcs[i].p.s) * cb;
    c[i] = float(cb * rc.scale);
  }
  *gt = target_grad(rc, others);
  return rf;
}

// Whether the fused path's second pass streams its stores (row_math.h, stream_gradient).
bool streams(const Batch& b, const GradOut& g) { return stream_gradient(b.rows, b.vocab, g.dtype); }

// Fused forward + gradient with one exp per element, for a run of consecutive rows:
//   pass 1, per piece b: m_b, s_b = Σ e_j and e_j = exp(z_j − m_b) kept in an fp32 scratch row
//   (L2-resident for realistic vocabularies); then fused_fold; then pass 2, g = e · c_b per piece.
// Pass 1 is bound by the exp, pass 2 by writing the gradient to memory. So that the two overlap,
// pass 2 of a row runs piece by piece with the pieces of the next row's pass 1 (two scratch rows,
// used in turn); the last row of the run is finished alone. Where the ISA has
// partial_store_write (AVX-512), a piece of pass 2 is written inside the exp loop of the next
// row's piece, 16 elements per 16 exps, so the stores drain while the FP port works; a burst of
// them between two pieces (we read it as) waits on the write-combining buffers instead (fused
// forward+backward time 0.70–1.15×, median ≈0.87, 64 × 128256, bf16/f16/f32, 1 and 2 threads).
// The gradient is taken from the double lse, not its fp32 rounding, so it is more accurate than
// (and not bitwise equal to) a separate backward from the fp32 lse. z is not read after pass 1,
// so g may be z itself (in place). The order of work never changes a result.
class FusedRows {
 public:
  // The scratch rows are the thread's own, kept between calls (fresh ones would cost page faults
  // every time); one FusedRows at a time per thread.
  FusedRows(const InKernels& k, DType dt, DType gdt, int64_t vocab, bool stream)
      : k_(k), dt_(dt), gdt_(gdt), vocab_(vocab), stream_(stream), rows_(thread_rows()) {
    for (int i = 0; i < 2; ++i) {
      if (rows_[i].e.size() < size_t(vocab)) rows_[i].e.resize(size_t(vocab));
      rows_[i].g = nullptr;
    }
  }
  ~FusedRows() { finish_pending(0); }

  // Pass 1 and the fold of one counted row (xt: its transformed target logit; coef: its gradient's
  // coefficients from its RowForward); its pass 2 is left pending.
  template <class CoefFn>
  RowForward row(const char* z /* (V,) */, char* g /* (V,) */, int64_t t, float xt, CoefFn&& coef) {
    Row& cur = rows_[next_];
    Row& prev = rows_[1 - next_];
    cur.pieces.clear();
    cur.g = g;
    size_t done = 0;  // pieces of prev written so far
    for_each_piece(vocab_, t, [&](int64_t off, int64_t n) {
      float* const e = cur.e.data() + off;
      const bool pending_piece = prev.g && done < prev.pieces.size();
      Piece p;
      // the previous row's piece written inside this piece's exp loop, where the ISA can
      if (pending_piece && k_.run_write(dt_, gdt_, z, off, n, e, pending(prev, done), &p)) {
        ++done;
      } else {
        p = k_.run(dt_, z, off, n, e);
        if (pending_piece) write_piece(prev, done++);
      }
      cur.pieces.push_back(p);
    });
    finish_pending(done);
    cur.c.resize(cur.pieces.size());
    float gt;
    const RowForward rf = fused_fold(cur.pieces.data(), cur.pieces.size(), xt, coef, cur.c.data(), &gt, &cur.beta);
    store_one(g, gdt_, t, gt);
    next_ = 1 - next_;
    return rf;
  }
  // The pieces of the row row() returned last.
  const std::vector<Piece>& last_pieces() const { return rows_[1 - next_].pieces; }

 private:
  struct Row {
    std::vector<float> e;  // (V,) scratch: e_j = exp(z_j − m_b)
    std::vector<Piece> pieces;
    std::vector<float> c;
    char* g = nullptr;  // the row's gradient, or nullptr when nothing is pending
    float beta = 0.0f;  // RowCoef::beta
  };
  static Row* thread_rows() {
    thread_local Row rows[2];
    return rows;
  }
  Kernels::Pending pending(const Row& r, size_t i) const {
    const Piece& pc = r.pieces[i];
    // (beta and the class weights at the piece: the smoothing path's pending write, scale_sub_store's)
    return {r.e.data() + pc.off, r.g + pc.off * dtype_size(gdt_), pc.n, r.c[i], stream_, r.beta, k_.w ? k_.w + pc.off : nullptr};
  }
  void write_piece(const Row& r, size_t i) {
    const Kernels::Pending w = pending(r, i);
    k_.store(gdt_, w.e, w.g, r.pieces[i].off, w.n, w.c, r.beta, w.stream);
  }
  // Writes what is left of the pending row's gradient (pieces [from, end)).
  void finish_pending(size_t from) {
    Row& prev = rows_[1 - next_];
    if (!prev.g) return;
    for (size_t i = from; i < prev.pieces.size(); ++i) write_piece(prev, i);
    prev.g = nullptr;
  }
  const InKernels& k_;
  DType dt_, gdt_;
  int64_t vocab_;
  bool stream_;
  Row* rows_;  // [2]
  int next_ = 0;
};

// Gradient of one counted row from its fp32 lse:
//   g_j = p_j · scale for j ≠ t,      p_j = exp(z_j − lse)
//   g_t = (p_t − 1) · scale = −(Σ_{j≠t} p_j) · scale
// The target element is taken from the sum of the *other* probabilities, so a confident
// prediction (p_t → 1) does not cancel: p_t − 1 computed directly in fp32 loses every digit
// once 1 − p_t < 2⁻²⁴, and ~all of them in bf16. The row then sums to 0 by construction.
// The target's block is split around t so z_t is never read here (in-place safe).
void row_grad(const Kernels& k, const char* z, DType dt, char* g, DType gdt, int64_t vocab,
              int64_t t, float lse, float scale) {
  const size_t esz = dtype_size(dt), gsz = dtype_size(gdt);
  auto* fn = k.grad[int(dt)][int(gdt)];
  double others = 0.0;  // Σ_{j≠t} p_j, piece sums folded in order
  for_each_piece(vocab, t, [&](int64_t off, int64_t n) { others += fn(z + off * esz, g + off * gsz, n, lse, scale); });
  store_one(g, gdt, t, -float(others) * scale);
}

// Rows per task: enough that a task streams ≥ 64K elements, so small vocabularies do not drown
// in scheduling; one row per task for realistic vocabularies.
int64_t rows_per_task(int64_t vocab) { return std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, vocab)); }

// Runs row(r, z, g, t) for every counted row r over the pool; z points at row r of the logits, g
// at row r of the gradient (nullptr without one). Ignored rows get ignored(r) and a zero gradient.
// 64-bit offsets: rows·vocab may exceed 2^31.
template <class RowFn, class IgnoredFn>
void for_each_row(const Batch& b, const GradOut& grad, RowFn&& row, IgnoredFn&& ignored) {
  const size_t esz = dtype_size(b.dtype), gsz = dtype_size(grad.dtype);
  const auto* base = static_cast<const char*>(b.logits);
  auto* gbase = static_cast<char*>(grad.data);
  const int64_t rpt = rows_per_task(b.vocab);
  const int64_t tasks = (b.rows + rpt - 1) / rpt;
  parallel_for(tasks, b.threads, [&](int64_t task) {
    const int64_t r1 = std::min(b.rows, (task + 1) * rpt);
    for (int64_t r = task * rpt; r < r1; ++r) {
      const char* z = base + size_t(r) * size_t(b.vocab) * esz;
      char* g = gbase ? gbase + size_t(r) * size_t(b.vocab) * gsz : nullptr;
      const int32_t t = b.targets[r];
      if (t == b.ignore_index) {
        ignored(r);
        if (g) zero_row(g, grad.dtype, b.vocab);
      } else {
        row(r, z, g, int64_t(t));
      }
    }
  });
}

float scale_of(const GradOut& g, int64_t r) { return g.row_scale ? g.row_scale[r] : g.scale; }

float load_one(const char* z, DType dt, int64_t j) {
  switch (dt) {
    case DType::F32: return reinterpret_cast<const float*>(z)[j];
    case DType::F16: return f16_to_float(reinterpret_cast<const uint16_t*>(z)[j]);
    default: return bf16_to_float(reinterpret_cast<const uint16_t*>(z)[j]);
  }
}

// ---- Row hooks: what a counted row's fold becomes ---------------------------------------------
// The forward drivers below are shared by plain CE and by the options that keep its per-element
// work. A hook gives the target's transformed logit (xt), each counted row's loss (called once per
// row, after its fold, with the row's pieces) and its gradient's coefficients (RowCoef).
//
// Plain CE: x = z, loss = lse − z_t, g = (p − onehot)·upstream.
struct PlainHook {
  const GradOut& g;
  float xt(float zt) const { return zt; }
  double loss(int64_t, int64_t, const RowForward& rf, const Piece*, size_t) const { return rf.loss; }
  RowCoef coef(int64_t r, int64_t, const RowForward&) const { return {double(scale_of(g, r)), 0.0}; }
};

// The options whose row is the plain one up to per-row constants and, for label smoothing, two
// more sums per block (fusedce.h, CeOptions; no softcap, no statistics): x = s·z and, with
// nll = lse − x_t,
//   ce_i = (1 − ε)·w_t·φ·nll + (ε/V)·Σ_j w_j·(lse − x_j)   (φ = (1 − p_t)^γ, 1 without focal)
//   zl_i = c·lse²
// where Σ_j w_j·(lse − x_j) = w_t·nll + Σ_b [W_b·(lse − m_b) + Q_b] over the pieces (the target is
// in none), all terms ≥ 0 for w ≥ 0 (Q_b = Σ_{j∈b} w_j·(m_b − x_j), W_b = Σ_{j∈b} w_j; a fully
// masked piece contributes its Q_b alone, +inf or 0). The gradient (GradRow in
// cross_entropy_options.cpp), with α = a_i·(1 − ε)·w_t·κ, β = a_i·ε/V, γ_i = b_i·2c·lse and
// A = α + β·W + γ_i:
//   g_j = s·(A·p_j − β·w_j) (j ≠ t),   g_t = s·(β·(W − w_t) + γ_i) − s·A·Σ_{j≠t} p_j
// so RowCoef {s·A, s·(β·(W − w_t) + γ_i), s·β}. ce_i and zl_i are kept per row (parts) and summed
// in row order afterwards.
struct PlainOptHook {
  const GradOut& g;
  const CeOptions& o;
  CeNorm norm;
  int64_t vocab;
  double* parts;  // (rows, 2): ce_i, zl_i of counted rows
  float xt(float zt) const { return o.logit_scale == 1.0f ? zt : zt * o.logit_scale; }
  double wt(int64_t t) const { return o.weight ? double(o.weight[t]) : 1.0; }
  double loss(int64_t r, int64_t t, const RowForward& rf, const Piece* pcs, size_t count) const {
    const double nll = rf.loss, w_t = wt(t);
    double ce = w_t * focal_factors(o.focal_gamma, nll).loss * nll;
    if (o.label_smoothing > 0.0f) {
      const double eps = o.label_smoothing;
      double smooth = w_t * nll;
      for (size_t i = 0; i < count; ++i) {
        const Piece& pc = pcs[i];
        smooth += pc.p.m == -std::numeric_limits<float>::infinity()
                      ? pc.q
                      : pc.wsum * (rf.lse - double(pc.p.m)) + pc.q;
      }
      ce = (1.0 - eps) * w_t * nll + eps / double(vocab) * smooth;
    }
    const double zl = double(o.z_loss) * rf.lse * rf.lse;
    parts[2 * r] = ce;
    parts[2 * r + 1] = zl;
    return ce + zl;
  }
  RowCoef coef(int64_t r, int64_t t, const RowForward& rf) const {
    const double up = scale_of(g, r), s = o.logit_scale, w_t = wt(t);
    const double alpha = up * norm.ce * (1.0 - double(o.label_smoothing)) * w_t * focal_factors(o.focal_gamma, rf.loss).grad;
    const double gamma = up * norm.z * 2.0 * double(o.z_loss) * rf.lse;
    const double beta = up * norm.ce * double(o.label_smoothing) / double(vocab);
    const double A = alpha + beta * o.weight_total + gamma;
    return {s * A, s * (beta * (o.weight_total - w_t) + gamma), float(s * beta)};
  }
};

// The fused forward over whole rows: runs of consecutive rows per task, so that FusedRows can
// overlap each row's gradient writes with the next row's exps; up to 16 rows per task while
// there are still about three tasks per thread to balance the load.
template <class Hook>
void forward_fused_rows(const InKernels& k, const ForwardArgs& a, const Hook& h, bool stream) {
  const Batch& b = a.batch;
  const Rows rw = rows_of(b, a.grad);
  const int64_t rpt =
      std::max(rows_per_task(b.vocab), std::min<int64_t>(16, b.rows / (3 * int64_t(effective_threads(b)))));
  parallel_for((b.rows + rpt - 1) / rpt, b.threads, [&](int64_t task) {
    FusedRows fr(k, b.dtype, a.grad.dtype, b.vocab, stream);
    for (int64_t r = task * rpt; r < std::min(b.rows, (task + 1) * rpt); ++r) {
      const int32_t t = b.targets[r];
      if (t == b.ignore_index) {
        a.losses[r] = a.lse[r] = 0.0f;
        zero_row(rw.gr(r), a.grad.dtype, b.vocab);
        continue;
      }
      const RowForward rf = fr.row(rw.zr(r), rw.gr(r), t, h.xt(load_one(rw.zr(r), b.dtype, t)),
                                   [&](const RowForward& f) { return h.coef(r, t, f); });
      const std::vector<Piece>& pcs = fr.last_pieces();
      const double loss = h.loss(r, t, rf, pcs.data(), pcs.size());
      a.losses[r] = float(loss);
      a.losses64[r] = loss;
      a.lse[r] = float(rf.lse);
    }
  });
}

// ---- Small batches: one row's pieces over several threads ----------------------------------
// With fewer rows than about two per thread, whole rows per task leave cores idle (1 × 128256
// would use one). Then every counted row's pieces are spread over the pool, and each row is
// folded in piece order afterwards. The pieces, the kernels called on them and the order of the
// folds are exactly those of the row path, so both paths give bitwise identical results and
// the choice (which depends on the thread count) never changes a bit.
struct SplitRows {
  std::vector<int64_t> row;        // counted rows, in order
  std::vector<size_t> first;       // pieces of row[s]: [first[s], first[s + 1])
  std::vector<Piece> pieces;       // offsets within their row
  std::vector<int64_t> slot;       // index s into row of each piece
};

bool use_split(const Batch& b) { return split_rows(b.rows, b.vocab, b.threads); }

SplitRows plan_split(const Batch& b) {
  SplitRows sp;
  for (int64_t r = 0; r < b.rows; ++r) {
    const int64_t t = b.targets[r];
    if (t == b.ignore_index) continue;
    const int64_t s = int64_t(sp.row.size());
    sp.row.push_back(r);
    sp.first.push_back(sp.pieces.size());
    for_each_piece(b.vocab, t, [&](int64_t off, int64_t n) {
      sp.pieces.push_back({off, n, {}, 0.0, 0.0});
      sp.slot.push_back(s);
    });
  }
  sp.first.push_back(sp.pieces.size());
  return sp;
}

// Runs fn(i) for every piece index i, in contiguous chunks of about a quarter of a thread's share.
template <class Fn>
void run_pieces(const Batch& b, size_t count, Fn&& fn) {
  const int64_t n = int64_t(count), parts = 4 * int64_t(effective_threads(b));
  const int64_t per = std::max<int64_t>(1, (n + parts - 1) / parts);
  parallel_for((n + per - 1) / per, b.threads, [&](int64_t u) {
    for (int64_t i = u * per; i < std::min(n, (u + 1) * per); ++i) fn(size_t(i));
  });
}

void zero_ignored(const Batch& b, const GradOut& grad, const Rows& rw) {
  if (!rw.g) return;
  for (int64_t r = 0; r < b.rows; ++r)
    if (b.targets[r] == b.ignore_index) zero_row(rw.gr(r), grad.dtype, b.vocab);
}

// Gradient from the fp32 lse, as row_grad, with the pieces spread over the pool.
void backward_split(const Kernels& k, const Batch& b, const GradOut& grad, const float* lse) {
  SplitRows sp = plan_split(b);
  const Rows rw = rows_of(b, grad);
  const size_t esz = dtype_size(b.dtype), gsz = dtype_size(grad.dtype);
  auto* fn = k.grad[int(b.dtype)][int(grad.dtype)];
  std::vector<float> sums(sp.pieces.size());
  run_pieces(b, sp.pieces.size(), [&](size_t i) {
    const Piece& pc = sp.pieces[i];
    const int64_t r = sp.row[size_t(sp.slot[i])];
    sums[i] = fn(rw.zr(r) + pc.off * esz, rw.gr(r) + pc.off * gsz, pc.n, lse[r], scale_of(grad, r));
  });
  for (size_t s = 0; s < sp.row.size(); ++s) {
    const int64_t r = sp.row[s];
    double others = 0.0;
    for (size_t i = sp.first[s]; i < sp.first[s + 1]; ++i) others += sums[i];
    store_one(rw.gr(r), grad.dtype, b.targets[r], -float(others) * scale_of(grad, r));
  }
  zero_ignored(b, grad, rw);
}

// Forward (and the fused gradient) as row_forward / FusedRows, with the pieces spread over the pool.
template <class Hook>
void forward_split(const InKernels& k, const ForwardArgs& a, const Hook& h) {
  const Batch& b = a.batch;
  SplitRows sp = plan_split(b);
  const Rows rw = rows_of(b, a.grad);
  const size_t gsz = dtype_size(a.grad.dtype);
  const bool fused = fuses(b, a.grad);
  // The calling thread's scratch, kept between calls (a fresh one would cost page faults each
  // time). Workers reach it through the pointer e (a thread_local named inside the lambdas would
  // be each worker's own). Concurrent calls have different callers, hence different scratches.
  thread_local std::vector<float> scratch;
  if (fused && scratch.size() < sp.row.size() * size_t(b.vocab)) scratch.resize(sp.row.size() * size_t(b.vocab));
  float* const e = scratch.data();
  std::vector<float> c(fused ? sp.pieces.size() : 0), beta(fused ? sp.row.size() : 0);
  auto e_of = [&](size_t i) { return e + size_t(sp.slot[i]) * size_t(b.vocab) + size_t(sp.pieces[i].off); };
  run_pieces(b, sp.pieces.size(), [&](size_t i) {
    Piece& pc = sp.pieces[i];
    pc = k.run(b.dtype, rw.zr(sp.row[size_t(sp.slot[i])]), pc.off, pc.n, fused ? e_of(i) : nullptr);
  });
  for (int64_t r = 0; r < b.rows; ++r)
    if (b.targets[r] == b.ignore_index) a.losses[r] = a.lse[r] = 0.0f;
  for (size_t s = 0; s < sp.row.size(); ++s) {
    const int64_t r = sp.row[s], t = b.targets[r];
    const float xt = h.xt(load_one(rw.zr(r), b.dtype, t));
    const Piece* pcs = sp.pieces.data() + sp.first[s];
    const size_t count = sp.first[s + 1] - sp.first[s];
    RowForward rf;
    if (fused) {
      float gt;
      rf = fused_fold(pcs, count, xt, [&](const RowForward& f) { return h.coef(r, t, f); }, c.data() + sp.first[s], &gt,
                      &beta[s]);
      store_one(rw.gr(r), a.grad.dtype, t, gt);  // z (all of it read above) may be g
    } else {
      Fold f;
      for (size_t i = 0; i < count; ++i) f.add(pcs[i].p);
      rf = finish(f, xt);
    }
    const double loss = h.loss(r, t, rf, pcs, count);
    a.losses[r] = float(loss);
    a.losses64[r] = loss;
    a.lse[r] = float(rf.lse);
  }
  if (fused) {
    const bool stream = streams(b, a.grad);
    run_pieces(b, sp.pieces.size(), [&](size_t i) {
      const Piece& pc = sp.pieces[i];
      k.store(a.grad.dtype, e_of(i), rw.gr(sp.row[size_t(sp.slot[i])]) + pc.off * gsz, pc.off, pc.n, c[i],
              beta[size_t(sp.slot[i])], stream);
    });
    zero_ignored(b, a.grad, rw);
  } else if (rw.g) {
    backward_split(k.k, b, a.grad, a.lse);  // plain CE only (plain_opt_applies)
  }
}

}  // namespace

int64_t count_targets(const int32_t* targets, int64_t rows, int64_t vocab, int32_t ignore_index) {
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t t = targets[r];
    if (t == ignore_index) continue;
    if (t < 0 || int64_t(t) >= vocab) return -1 - r;
    ++count;
  }
  return count;
}

namespace {
// The forward over a batch with hook h; a.losses64 is required here.
template <class Hook>
void forward_rows(const InKernels& k, const ForwardArgs& a, const Hook& h) {
  const Batch& b = a.batch;
  if (use_split(b)) {
    forward_split(k, a, h);
  } else if (fuses(b, a.grad)) {
    forward_fused_rows(k, a, h, streams(b, a.grad));
  } else {
    for_each_row(
        b, a.grad,
        [&](int64_t r, const char* z, char* g, int64_t t) {
          thread_local std::vector<Piece> pcs;
          const RowForward rf = row_forward(k, z, b.dtype, b.vocab, t, h.xt(load_one(z, b.dtype, t)), pcs);
          const double loss = h.loss(r, t, rf, pcs.data(), pcs.size());
          a.losses[r] = float(loss);
          a.losses64[r] = loss;
          a.lse[r] = float(rf.lse);
          // Past kFusedMaxVocab: the gradient from the fp32 lse, as a separate backward computes it
          // (plain CE only: plain_opt_applies).
          if (g) row_grad(k.k, z, b.dtype, g, a.grad.dtype, b.vocab, t, a.lse[r], scale_of(a.grad, r));
        },
        [&](int64_t r) { a.losses[r] = a.lse[r] = 0.0f; });
  }
}
}  // namespace

ForwardTotals cross_entropy_forward(const ForwardArgs& args) {
  // The batch sum is taken over the rows' double losses, not their fp32 roundings.
  // (the caller's losses64, when given, zero-filled, serves; ignored rows stay 0)
  std::vector<double> row_loss(args.losses64 ? 0 : size_t(args.batch.rows), 0.0);
  ForwardArgs a = args;
  if (!a.losses64) a.losses64 = row_loss.data();
  const Batch& b = a.batch;
  const InKernels k{b.kernels ? *b.kernels : active_kernels(), 1.0f, false, nullptr};
  forward_rows(k, a, PlainHook{a.grad});
  double sum = 0.0;
  for (int64_t r = 0; r < b.rows; ++r)
    if (b.targets[r] != b.ignore_index) sum += a.losses64[r];
  return {sum};
}

bool plain_opt_applies(const ForwardOptArgs& a) {
  const CeOptions& o = a.opt;
  const Batch& b = a.base.batch;
  const Kernels& k = b.kernels ? *b.kernels : active_kernels();
  const bool stats = a.stats.argmax || a.stats.entropy || a.stats.target_logprob || a.stats.max_prob;
  return o.softcap == 0.0f && !stats && InKernels::available(k, o.logit_scale, o.label_smoothing > 0.0f) &&
         (!a.base.grad.data || b.vocab <= kFusedMaxVocab);
}

ForwardOptTotals cross_entropy_forward_plain_opt(const ForwardOptArgs& a) {
  const Batch& b = a.base.batch;
  std::vector<double> row_loss(a.base.losses64 ? 0 : size_t(b.rows), 0.0), parts(2 * size_t(b.rows), 0.0);
  ForwardArgs fa = a.base;
  if (!fa.losses64) fa.losses64 = row_loss.data();
  const bool smooth = a.opt.label_smoothing > 0.0f;
  const InKernels k{b.kernels ? *b.kernels : active_kernels(), a.opt.logit_scale, smooth, smooth ? a.opt.weight : nullptr};
  forward_rows(k, fa, PlainOptHook{fa.grad, a.opt, a.norm, b.vocab, parts.data()});
  ForwardOptTotals tot{0.0, 0.0};
  for (int64_t r = 0; r < b.rows; ++r)
    if (b.targets[r] != b.ignore_index) {
      tot.ce_sum += parts[2 * size_t(r)];
      tot.z_sum += parts[2 * size_t(r) + 1];
    }
  return tot;
}

void cross_entropy_backward(const BackwardArgs& a) {
  const Batch& b = a.batch;
  const Kernels& k = b.kernels ? *b.kernels : active_kernels();
  if (use_split(b)) return backward_split(k, b, a.grad, a.lse);
  for_each_row(
      b, a.grad,
      [&](int64_t r, const char* z, char* g, int64_t t) {
        row_grad(k, z, b.dtype, g, a.grad.dtype, b.vocab, t, a.lse[r], scale_of(a.grad, r));
      },
      [](int64_t) {});
}

}  // namespace fusedce
