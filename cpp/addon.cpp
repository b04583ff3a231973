// N-API glue of the CPU addon: one request object per call (cpp/glue.h), read once into C++
// values, validated, then handed to the out-param core of fusedce.h.
//
// The TypeScript facade (ts/) validates arguments first and gives the user-facing messages; this
// file re-checks every invariant a kernel relies on (array types, lengths, shapes, targets in
// range, one overlap rule over every range a call touches), so that no call through the raw
// binding reaches a kernel with invalid state. Outputs are allocated here through the loader's
// allocator (glue::fresh: an allocation failure is a RangeError, never a V8 abort), and the
// reduced loss is computed here, once, for every op. Each op runs sync, or with `async: true` on
// the libuv pool and returns a Promise.
#include <napi.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fusedce.h"
#include "glue.h"
#include "thread_pool.h"

namespace {

using fusedce::DType;
using fusedce::Reduction;
using fusedce::glue::Array;
using fusedce::glue::Call;
using fusedce::glue::Ranges;
using fusedce::glue::Request;
using fusedce::glue::copy_of;
using fusedce::glue::Finish;
using fusedce::glue::throw_range;
using fusedce::glue::throw_type;

constexpr double kMaxRows = 9007199254740991.0;
constexpr double kMaxVocab = 2147483647.0;

napi_typedarray_type array_type_for(DType d) { return d == DType::F32 ? napi_float32_array : napi_uint16_array; }

// The logits (rows, vocab) of dtype, and the call's thread count: every op's first fields.
struct Matrix {
  Array data;
  DType dtype;
  int64_t rows, vocab;
  double n() const { return double(rows) * double(vocab); }
};
Matrix read_matrix(const Request& r) {
  Matrix m;
  m.dtype = DType(r.integer("dtype", 0, 2));
  m.rows = r.integer("rows", 0, kMaxRows);
  m.vocab = r.integer("vocab", 1, kMaxVocab);
  m.data = r.array("logits", array_type_for(m.dtype), m.n());
  return m;
}
int read_threads(const Request& r) { return int(r.integer("threads", 1, 65536)); }

// A fresh output (glue::fresh: the loader's allocator, not zero-filled; a RangeError naming the
// call and the bytes when memory runs out).
Array fresh(const Request& r, napi_typedarray_type type, size_t length, const char* what) {
  return fusedce::glue::fresh(r.env(), r.fn(), type, length, what);
}

// The gradient destination, when one is wanted: the caller's `out` (rows, vocab) of gradDtype,
// which may be the logits themselves with the same dtype (in place), or a fresh array.
Array read_grad(const Request& r, const Matrix& z, DType gdt, bool wanted) {
  if (!wanted) {
    if (r.present("out")) throw_type(r.env(), std::string(r.fn()) + ": out must be undefined unless withGrad is true");
    return Array{};
  }
  if (r.present("out")) return r.array("out", array_type_for(gdt), z.n());
  return fresh(r, array_type_for(gdt), size_t(z.n()), "the gradient");
}
int alias_of(const Matrix& z, DType gdt, int logits_range) { return gdt == z.dtype ? logits_range : -1; }
// The gradient's dtype: gradDtype, else the logits' (an `out` must then be of that dtype).
DType read_grad_dtype(const Request& r, DType fallback) {
  return DType(r.present("gradDtype") ? r.integer("gradDtype", 0, 2) : int64_t(fallback));
}
// The upstream gradient d(objective)/d(loss): a finite number, 1 when absent.
double read_grad_output(const Request& r) {
  const double go = r.number_or("gradOutput", 1.0);
  if (!std::isfinite(go)) throw_range(r.env(), std::string(r.fn()) + ": gradOutput must be a finite number");
  return go;
}

// What both backwards (cross-entropy, soft targets) read after their problem: the forward's lse
// (rows,), the upstream gradient (a number, or per row with reduction 'none'), and the gradient's
// destination. lse and the per-row gradOutput are copied, so the kernels read what was checked;
// their ranges and the gradient's join the call's one overlap check after the problem's inputs.
struct BackwardIn {
  DType gdt;
  double go;
  Array grad;
  std::shared_ptr<std::vector<float>> lse, row_go;
  bool per_row;
  const float* row_scale() const { return per_row ? row_go->data() : nullptr; }
};
BackwardIn read_backward(const Request& r, const Matrix& z, Reduction reduction, Ranges& ranges, int logits_range) {
  BackwardIn b;
  const auto rows = double(z.rows);
  const Array lse_in = r.array("lse", napi_float32_array, rows);
  b.go = read_grad_output(r);
  const Array rows_in = r.array("gradOutputRows", napi_float32_array, rows, true);
  if (rows_in.present && reduction != Reduction::None)
    throw_type(r.env(), std::string(r.fn()) + ": a per-row gradOutput (Float32Array) needs reduction 'none'");
  b.gdt = read_grad_dtype(r, z.dtype);
  b.grad = read_grad(r, z, b.gdt, true);
  ranges.read(lse_in, "lse");
  ranges.read(rows_in, "gradOutput");
  ranges.write(b.grad, "out.data", alias_of(z, b.gdt, logits_range));
  b.lse = std::make_shared<std::vector<float>>(copy_of<float>(lse_in));
  b.row_go = std::make_shared<std::vector<float>>(copy_of<float>(rows_in));
  b.per_row = rows_in.present;
  return b;
}

// Gradient scale for reduction r with upstream gradient go: mean → go/count, sum/none → go.
float grad_scale(Reduction r, double go, int64_t count) {
  if (r == Reduction::Mean) return count > 0 ? float(go / double(count)) : 0.0f;
  return float(go);
}
// The reduced loss: mean → Σ / count (0 when nothing counts), sum and none → Σ.
double reduce(Reduction r, double sum, double count) {
  return r == Reduction::Mean ? (count > 0 ? sum / count : 0.0) : sum;
}

// ---- cross-entropy ---------------------------------------------------------------------------

// What forward and backward share: logits, targets (copied, then checked), reduction, threads,
// and the loss options (labelSmoothing, weight (copied, then checked), zLoss, logitScale, softcap).
struct Problem {
  Matrix z;
  std::shared_ptr<std::vector<int32_t>> targets;  // the checked copy the kernels read
  Array targets_in;
  int32_t ignore_index;
  Reduction reduction;
  int threads;
  int64_t count;
  bool any_option = false;
  fusedce::CeOptions opt;
  std::shared_ptr<std::vector<float>> weight;
  Array weight_in;
  double weight_sum = 0;  // Σ w[t_i] over counted rows (the mean's D), count without weights

  fusedce::Batch batch() const {
    return {z.data.data, z.dtype, z.rows, z.vocab, targets->data(), ignore_index, threads, nullptr};
  }
  fusedce::CeNorm norm() const {
    if (reduction != Reduction::Mean) return {1.0, 1.0};
    // torch's weighted mean: Σ w_t·ℓ / Σ w_t, for weights of any sign; 0 when Σ w_t is 0 (torch: NaN)
    return {weight_sum != 0.0 ? 1.0 / weight_sum : 0.0, count > 0 ? 1.0 / double(count) : 0.0};
  }
};

#define CE_FIELDS "logits", "dtype", "rows", "vocab", "targets", "ignoreIndex", "reduction", "threads", \
                  "labelSmoothing", "weight", "zLoss", "logitScale", "softcap", "focalGamma", "async"

Problem read_problem(const Request& r) {
  Problem p;
  p.z = read_matrix(r);
  p.targets_in = r.array("targets", napi_int32_array, double(p.z.rows));
  p.ignore_index = int32_t(r.integer("ignoreIndex", -2147483648.0, 2147483647.0));
  p.reduction = Reduction(r.integer("reduction", 0, 2));
  p.threads = read_threads(r);
  auto num = [&](const char* name, double fallback, double lo, double hi, bool lo_open) -> double {
    if (!r.present(name)) return fallback;
    const double d = r.number(name);
    if (!std::isfinite(d) || d < lo || d > hi || (lo_open && d == lo))
      throw_range(r.env(), std::string(r.fn()) + ": " + name + " must be a finite number in " + (lo_open ? "(" : "[") +
                               std::to_string(lo) + ", " + std::to_string(hi) + "], but got " + std::to_string(d));
    return d;
  };
  p.opt.label_smoothing = float(num("labelSmoothing", 0.0, 0.0, 1.0, false));
  p.opt.z_loss = float(num("zLoss", 0.0, 0.0, 1e30, false));
  p.opt.logit_scale = float(num("logitScale", 1.0, -1e30, 1e30, false));
  p.opt.softcap = float(num("softcap", 0.0, 0.0, 1e30, false));
  p.opt.focal_gamma = float(num("focalGamma", 0.0, 0.0, 1e6, false));
  if (p.opt.focal_gamma > 0.0f && (p.opt.label_smoothing != 0.0f || p.opt.z_loss != 0.0f))
    throw_type(r.env(), std::string(r.fn()) + ": focalGamma cannot be combined with labelSmoothing or zLoss (no agreed semantics)");
  p.opt.weight_total = double(p.z.vocab);
  p.weight_in = r.array("weight", napi_float32_array, double(p.z.vocab), true);

  p.targets = std::make_shared<std::vector<int32_t>>(copy_of<int32_t>(p.targets_in));
  const int32_t* t = p.targets->data();
  p.count = fusedce::count_targets(t, p.z.rows, p.z.vocab, p.ignore_index);
  if (p.count < 0) {
    const int64_t row = -1 - p.count;
    throw_range(r.env(), std::string(r.fn()) + ": targets[" + std::to_string(row) + "] = " + std::to_string(t[row]) +
                             " is outside [0, " + std::to_string(p.z.vocab) + ") and is not ignoreIndex (" +
                             std::to_string(p.ignore_index) + ")");
  }
  p.weight_sum = double(p.count);
  if (p.weight_in.present) {
    p.weight = std::make_shared<std::vector<float>>(copy_of<float>(p.weight_in));
    const float* w = p.weight->data();
    // any finite weight, negative included (torch's semantics)
    const float big = std::numeric_limits<float>::max();
    if (const int64_t j = fusedce::first_outside(w, p.z.vocab, -big, big, p.threads); j >= 0)
      throw_range(r.env(), std::string(r.fn()) + ": weight[" + std::to_string(j) + "] = " + std::to_string(w[j]) +
                               " must be a finite number");
    p.opt.weight = w;
    // W enters only through β·W, β = a·ε/V (CeOptions): without smoothing β = 0 and W (finite)
    // changes no bit, so the vocab-long sum is skipped (weighted forward 0.90× → 0.94× of plain)
    p.opt.weight_total = p.opt.label_smoothing != 0.0f ? fusedce::sum_f64(w, p.z.vocab) : 0.0;
    double D = 0.0;
    for (int64_t i = 0; i < p.z.rows; ++i)
      if (t[i] != p.ignore_index) D += double(w[t[i]]);
    p.weight_sum = D;
  }
  p.any_option = p.opt.label_smoothing != 0.0f || p.opt.weight || p.opt.z_loss != 0.0f || p.opt.logit_scale != 1.0f ||
                 p.opt.softcap != 0.0f || p.opt.focal_gamma != 0.0f;
  return p;
}

// crossEntropyForward({ fn, logits, dtype, rows, vocab, targets, ignoreIndex, reduction, threads,
//   withGrad, gradDtype, out: (rows, vocab) of gradDtype | null (null: a fresh gradient), gradOutput,
//   labelSmoothing?, weight?: Float32Array(vocab), zLoss?, logitScale?, softcap?, stats, async })
//   → { loss, lossSum, count, weightSum, zLoss, losses, lse: Float32Array(rows), grad?,
//       with stats argmax: Int32Array(rows), entropy, targetLogprob, maxProb: Float32Array(rows) }
// loss is reduced by the rules of fusedce.h (CeOptions). Without options and stats this is the
// plain kernel (cross_entropy.cpp), untouched by them.
Napi::Value Forward(const Napi::CallbackInfo& info) {
  Request r(info, "crossEntropyForward", {CE_FIELDS, "withGrad", "out", "gradDtype", "gradOutput", "gradOutputRows", "stats", "losses64"});
  Problem p = read_problem(r);
  const auto rows = size_t(p.z.rows);
  const bool with_grad = r.flag("withGrad");
  const DType gdt = read_grad_dtype(r, p.z.dtype);
  const double go = read_grad_output(r);
  // a per-row upstream gradient for the fused gradient (reduction 'none': per-sequence means), copied
  const Array rows_in = r.array("gradOutputRows", napi_float32_array, double(rows), true);
  if (rows_in.present && p.reduction != Reduction::None)
    throw_type(r.env(), std::string(r.fn()) + ": a per-row gradOutput (Float32Array) needs reduction 'none'");
  const auto row_go = rows_in.present ? std::make_shared<std::vector<float>>(copy_of<float>(rows_in)) : nullptr;
  if (row_go)
    for (size_t i = 0; i < rows; ++i)
      if (!std::isfinite((*row_go)[i]))
        throw_range(r.env(), std::string(r.fn()) + ": gradOutput[" + std::to_string(i) + "] must be a finite number");
  const float* row_scale = row_go ? row_go->data() : nullptr;
  const bool stats = r.flag("stats");
  const bool async = r.flag("async");
  const Array grad = read_grad(r, p.z, gdt, with_grad);
  const Array losses = fresh(r, napi_float32_array, rows, "losses");
  const Array lse = fresh(r, napi_float32_array, rows, "lse");
  // the row losses in double too (per-sequence sums keep their digits), zero-filled
  Array l64;
  if (r.flag("losses64")) {
    l64 = fresh(r, napi_float64_array, rows, "losses64");
    std::fill_n(static_cast<double*>(l64.data), rows, 0.0);
  }
  Array argmax, ent, tlp, maxp;
  if (stats) {
    argmax = fresh(r, napi_int32_array, rows, "stats.argmax");
    ent = fresh(r, napi_float32_array, rows, "stats.entropy");
    tlp = fresh(r, napi_float32_array, rows, "stats.targetLogprob");
    maxp = fresh(r, napi_float32_array, rows, "stats.maxProb");
  }

  Ranges ranges;
  const int zr = ranges.read(p.z.data, "logits.data");
  ranges.read(p.targets_in, "targets");
  ranges.read(p.weight_in, "weight");
  ranges.read(rows_in, "gradOutput");
  ranges.write(grad, "out.data", alias_of(p.z, gdt, zr));
  ranges.check(r.env(), r.fn());

  Call call(r.env(), r.fn());
  call.pin(p.z.data, "logits.data");
  call.pin(grad, "out.data");
  call.result("losses", losses);
  call.result("lse", lse);
  call.result("losses64", l64);
  call.result("grad", grad);
  call.result("argmax", argmax);
  call.result("entropy", ent);
  call.result("targetLogprob", tlp);
  call.result("maxProb", maxp);
  call.scratch(double(rows) * 24 + double(p.threads) * (double(p.z.vocab) * 8 + 65536));

  struct Totals {
    double loss = 0, loss_sum = 0, z = 0;
  };
  auto totals = std::make_shared<Totals>();
  const int64_t count = p.count;
  const double weight_sum = p.weight_sum;
  const Finish finish = [totals, count, weight_sum](Napi::Object o) {
    o.Set("loss", totals->loss);
    o.Set("lossSum", totals->loss_sum);
    o.Set("count", double(count));
    o.Set("weightSum", weight_sum);
    o.Set("zLoss", totals->z);
  };
  const Reduction red = p.reduction;
  const auto keep_t = p.targets;
  const auto keep_w = p.weight;
  auto* lp = static_cast<float*>(losses.data);
  auto* sp = static_cast<float*>(lse.data);
  if (!p.any_option && !stats) {
    const fusedce::ForwardArgs fa{p.batch(), lp, sp, {grad.present ? grad.data : nullptr, gdt, grad_scale(red, go, count), row_scale},
                                  l64.present ? static_cast<double*>(l64.data) : nullptr};
    return call.run(async, [fa, totals, red, count, keep_t, row_go] {
      const double sum = fusedce::cross_entropy_forward(fa).loss_sum;
      totals->loss_sum = sum;
      totals->loss = reduce(red, sum, double(count));
    }, finish);
  }
  fusedce::ForwardOptArgs fa;
  fa.base = {p.batch(), lp, sp, {grad.present ? grad.data : nullptr, gdt, float(go), row_scale},
             l64.present ? static_cast<double*>(l64.data) : nullptr};
  fa.opt = p.opt;
  fa.norm = p.norm();
  if (stats)
    fa.stats = {static_cast<int32_t*>(argmax.data), static_cast<float*>(ent.data), static_cast<float*>(tlp.data),
                static_cast<float*>(maxp.data)};
  return call.run(async, [fa, totals, red, count, weight_sum, keep_t, keep_w, row_go] {
    const fusedce::ForwardOptTotals t = fusedce::cross_entropy_forward_opt(fa);
    // the weighted mean divides the cross-entropy part by Σ w[target] (any sign; 0 when it is 0),
    // the z part by count
    const double ce = red == Reduction::Mean ? (weight_sum != 0.0 ? t.ce_sum / weight_sum : 0.0) : t.ce_sum;
    totals->z = reduce(red, t.z_sum, double(count));
    totals->loss = ce + totals->z;
    totals->loss_sum = t.ce_sum + t.z_sum;
  }, finish);
}

// crossEntropyBackward({ …the forward's shared fields, lse: Float32Array(rows) (copied),
//   gradOutput: number, gradOutputRows: Float32Array(rows) | null (copied; reduction 'none'),
//   gradDtype, out: (rows, vocab) of gradDtype | null (null: a fresh gradient), async })
//   → { grad, count }
Napi::Value Backward(const Napi::CallbackInfo& info) {
  Request r(info, "crossEntropyBackward", {CE_FIELDS, "lse", "gradOutput", "gradOutputRows", "out", "gradDtype"});
  Problem p = read_problem(r);
  const bool async = r.flag("async");
  Ranges ranges;
  const int zr = ranges.read(p.z.data, "logits.data");
  ranges.read(p.targets_in, "targets");
  ranges.read(p.weight_in, "weight");
  const BackwardIn bw = read_backward(r, p.z, p.reduction, ranges, zr);
  ranges.check(r.env(), r.fn());

  const Array& grad = bw.grad;
  const DType gdt = bw.gdt;
  const auto lse = bw.lse;
  const auto row_go = bw.row_go;
  Call call(r.env(), r.fn());
  call.pin(p.z.data, "logits.data");
  call.pin(grad, "out.data");
  call.result("grad", grad);
  call.scratch(double(p.z.rows) * 24 + double(p.threads) * (double(p.z.vocab) * 8 + 65536));
  const int64_t count = p.count;
  const Finish finish = [count](Napi::Object o) { o.Set("count", double(count)); };
  const float* row_scale = bw.row_scale();
  const double go = bw.go;
  const auto keep_t = p.targets;
  const auto keep_w = p.weight;
  if (!p.any_option) {
    const fusedce::BackwardArgs ba{p.batch(), lse->data(), {grad.data, gdt, grad_scale(p.reduction, go, count), row_scale}};
    return call.run(async, [ba, lse, row_go, keep_t] { fusedce::cross_entropy_backward(ba); }, finish);
  }
  const fusedce::BackwardArgs ba{p.batch(), lse->data(), {grad.data, gdt, float(go), row_scale}};
  const fusedce::CeOptions opt = p.opt;
  const fusedce::CeNorm norm = p.norm();
  return call.run(async, [ba, opt, norm, lse, row_go, keep_t, keep_w] { fusedce::cross_entropy_backward_opt(ba, opt, norm); },
                  finish);
}

// ---- soft targets, KL, entropy ------------------------------------------------------------------

// Checks a probability target (rows, vocab) f32: every value finite and ≥ 0. Rows need not sum
// to 1 (torch computes −Σ q·log p for any q: top-k distillation keeps k probabilities per row); a
// row that is all 0 counts nowhere. Returns the rows that count.
int64_t check_probs(const Request& r, const float* q, int64_t rows, int64_t vocab, int threads) {
  // finite and ≥ 0 ⇔ in [0, FLT_MAX] (NaN and ±inf outside); vectorised and split over the pool
  const int64_t bad = fusedce::first_outside(q, rows * vocab, 0.0f, std::numeric_limits<float>::max(), threads);
  if (bad >= 0)
    throw_range(r.env(), std::string(r.fn()) + ": target[" + std::to_string(bad / vocab) + ", " + std::to_string(bad % vocab) +
                             "] = " + std::to_string(q[bad]) + " must be a finite probability ≥ 0 (targetKind 'probs')");
  return fusedce::count_nonzero_rows(q, rows, vocab, threads);
}

// The fields softForward and softBackward share:
//   logits, dtype, rows, vocab, target (rows, vocab), targetDtype (−1: f32 probabilities), op
//   (0 soft CE, 1 KL forward, 2 KL reverse), invTemperature, lossFactor, reduction, threads
#define SOFT_FIELDS "logits", "dtype", "rows", "vocab", "target", "targetDtype", "op", "invTemperature", \
                    "lossFactor", "reduction", "threads", "gradOutput", "out", "gradDtype", "async", "labelSmoothing", "weight"
struct SoftProblem {
  Matrix z;
  Array target;
  fusedce::SoftArgs args;
  Reduction reduction;
  int64_t count;
  std::shared_ptr<std::vector<float>> weight;  // the checked copy the kernel reads (probabilities only)
  Array weight_in;
};
SoftProblem read_soft(const Request& r) {
  SoftProblem sp;
  sp.z = read_matrix(r);
  const int64_t tdt = r.integer("targetDtype", -1, 2);
  const bool probs = tdt < 0;
  sp.target = r.array("target", probs ? napi_float32_array : array_type_for(DType(tdt)), sp.z.n());
  const int64_t op = r.integer("op", 0, 2);
  const double inv_t = r.number("invTemperature");
  const double factor = r.number("lossFactor");
  if (!(inv_t > 0.0) || !std::isfinite(inv_t) || !std::isfinite(factor))
    throw_range(r.env(), std::string(r.fn()) + ": temperature must be a finite number > 0");
  if (probs && op != 0) throw_type(r.env(), std::string(r.fn()) + ": probability targets are for the soft cross-entropy only");
  sp.reduction = Reduction(r.integer("reduction", 0, 2));
  const int threads = read_threads(r);
  sp.count = probs ? check_probs(r, static_cast<const float*>(sp.target.data), sp.z.rows, sp.z.vocab, threads) : sp.z.rows;
  sp.args = {sp.z.data.data, sp.z.dtype, sp.target.data, probs ? DType::F32 : DType(tdt), probs,
             sp.z.rows, sp.z.vocab, fusedce::SoftOp(op), float(inv_t), factor, threads, nullptr};
  // torch's cross_entropy(z, q, weight=, label_smoothing=) on probability targets
  const bool has_eps = r.present("labelSmoothing");
  sp.weight_in = r.array("weight", napi_float32_array, double(sp.z.vocab), true);
  if ((has_eps || sp.weight_in.present) && !probs)
    throw_type(r.env(), std::string(r.fn()) + ": labelSmoothing and weight are for probability targets (targetKind 'probs')");
  if (has_eps) {
    const double eps = r.number("labelSmoothing");
    if (!(eps >= 0.0 && eps <= 1.0)) throw_range(r.env(), std::string(r.fn()) + ": labelSmoothing must be a finite number in [0, 1]");
    sp.args.label_smoothing = float(eps);
  }
  if (sp.weight_in.present) {
    sp.weight = std::make_shared<std::vector<float>>(copy_of<float>(sp.weight_in));
    for (int64_t j = 0; j < sp.z.vocab; ++j)
      if (!std::isfinite((*sp.weight)[size_t(j)]))
        throw_range(r.env(), std::string(r.fn()) + ": weight[" + std::to_string(j) + "] = " +
                                 std::to_string((*sp.weight)[size_t(j)]) + " must be a finite number");
    sp.args.weight = sp.weight->data();
  }
  return sp;
}

// softForward({ …shared, withGrad, gradDtype, out | null, gradOutput, async })
//   → { loss, lossSum, count, losses, lse: Float32Array(rows), grad? }
Napi::Value SoftForward(const Napi::CallbackInfo& info) {
  Request r(info, "softCrossEntropyForward", {SOFT_FIELDS, "withGrad"});
  SoftProblem sp = read_soft(r);
  const auto rows = size_t(sp.z.rows);
  const bool with_grad = r.flag("withGrad");
  const DType gdt = read_grad_dtype(r, sp.z.dtype);
  const double go = read_grad_output(r);
  const bool async = r.flag("async");
  const Array grad = read_grad(r, sp.z, gdt, with_grad);
  const Array losses = fresh(r, napi_float32_array, rows, "losses");
  const Array lse = fresh(r, napi_float32_array, rows, "lse");

  Ranges ranges;
  const int zr = ranges.read(sp.z.data, "logits.data");
  ranges.read(sp.target, "target.data");  // may share memory with the logits: both are only read
  ranges.read(sp.weight_in, "weight");
  ranges.write(grad, "out.data", alias_of(sp.z, gdt, zr));
  ranges.check(r.env(), r.fn());

  Call call(r.env(), r.fn());
  call.pin(sp.z.data, "logits.data");
  call.pin(sp.target, "target.data");
  call.pin(grad, "out.data");
  call.result("losses", losses);
  call.result("lse", lse);
  call.result("grad", grad);
  call.scratch(double(rows) * 16 + double(sp.args.threads) * (double(sp.z.vocab) / 256 * 32 + 65536));
  const fusedce::SoftForwardOut out{static_cast<float*>(losses.data), static_cast<float*>(lse.data),
                                    {grad.present ? grad.data : nullptr, gdt, grad_scale(sp.reduction, go, sp.count), nullptr}};
  const fusedce::SoftArgs args = sp.args;
  const Reduction red = sp.reduction;
  const int64_t count = sp.count;
  const auto keep_w = sp.weight;  // the weights' copy lives as long as the call
  auto totals = std::make_shared<std::pair<double, double>>(0.0, 0.0);
  return call.run(
      async,
      [args, out, totals, red, count, keep_w] {
        const double sum = fusedce::soft_forward(args, out).loss_sum;
        *totals = {reduce(red, sum, double(count)), sum};
      },
      [totals, count](Napi::Object o) {
        o.Set("loss", totals->first);
        o.Set("lossSum", totals->second);
        o.Set("count", double(count));
      });
}

// softBackward({ …shared, lse: Float32Array(rows) (copied), gradOutput, gradOutputRows | null
//   (copied), gradDtype, out | null, async }) → { grad, count }
Napi::Value SoftBackward(const Napi::CallbackInfo& info) {
  Request r(info, "softCrossEntropyBackward", {SOFT_FIELDS, "lse", "gradOutputRows"});
  SoftProblem sp = read_soft(r);
  if (sp.args.op == fusedce::SoftOp::KlReverse)
    throw_type(r.env(), std::string(r.fn()) + ": the reverse KL has no separate backward; use withGrad on the forward");
  const bool async = r.flag("async");
  Ranges ranges;
  const int zr = ranges.read(sp.z.data, "logits.data");
  ranges.read(sp.target, "target.data");
  ranges.read(sp.weight_in, "weight");
  const BackwardIn bw = read_backward(r, sp.z, sp.reduction, ranges, zr);
  ranges.check(r.env(), r.fn());

  const auto lse = bw.lse;
  const auto row_go = bw.row_go;
  Call call(r.env(), r.fn());
  call.pin(sp.z.data, "logits.data");
  call.pin(sp.target, "target.data");
  call.pin(bw.grad, "out.data");
  call.result("grad", bw.grad);
  call.scratch(double(sp.z.rows) * 16 + double(sp.args.threads) * (double(sp.z.vocab) / 256 * 32 + 65536));
  const fusedce::GradOut g{bw.grad.data, bw.gdt, grad_scale(sp.reduction, bw.go, sp.count), bw.row_scale()};
  const fusedce::SoftArgs args = sp.args;
  const int64_t count = sp.count;
  const auto keep_w = sp.weight;
  return call.run(async, [args, lse, row_go, g, keep_w] { fusedce::soft_backward(args, lse->data(), g); },
                  [count](Napi::Object o) { o.Set("count", double(count)); });
}

// entropy({ fn, logits, dtype, rows, vocab, invTemperature, threads, async }) → { entropy: Float32Array(rows) }
Napi::Value Entropy(const Napi::CallbackInfo& info) {
  Request r(info, "entropy", {"logits", "dtype", "rows", "vocab", "invTemperature", "threads", "async"});
  const std::string fn = r.fn();
  const Matrix z = read_matrix(r);
  const double inv_t = r.number("invTemperature");
  if (!(inv_t > 0.0) || !std::isfinite(inv_t)) throw_range(r.env(), fn + ": temperature must be a finite number > 0");
  const int threads = read_threads(r);
  const bool async = r.flag("async");
  const Array out = fresh(r, napi_float32_array, size_t(z.rows), "the entropies");
  Call call(r.env(), r.fn());
  call.pin(z.data, "logits.data");
  call.result("entropy", out);
  call.scratch(double(threads) * (double(z.vocab) / 256 * 32 + 65536));
  const void* zd = z.data.data;
  auto* od = static_cast<float*>(out.data);
  const DType dt = z.dtype;
  const int64_t rows = z.rows, vocab = z.vocab;
  const float it = float(inv_t);
  return call.run(async, [=] { fusedce::entropy_rows(zd, dt, rows, vocab, it, threads, od); }, [](Napi::Object) {});
}

// jsdForward({ fn, logits, dtype, rows, vocab, target (reference logits), targetDtype, beta in (0, 1),
//   invTemperature, reduction, threads, withGrad, gradDtype, out | null, gradOutput, async })
//   → { loss, lossSum, count, losses, lse: Float32Array(rows), grad? }. Every row counts.
Napi::Value JsdForward(const Napi::CallbackInfo& info) {
  Request r(info, "jsDivergenceForward", {"logits", "dtype", "rows", "vocab", "target", "targetDtype", "beta", "invTemperature",
                                          "reduction", "threads", "withGrad", "gradDtype", "out", "gradOutput", "async"});
  const Matrix z = read_matrix(r);
  const DType tdt = DType(r.integer("targetDtype", 0, 2));
  const Array target = r.array("target", array_type_for(tdt), z.n());
  const double beta = r.number("beta");
  if (!(beta > 0.0 && beta < 1.0)) throw_range(r.env(), std::string(r.fn()) + ": beta must be in (0, 1) here (0 and 1 are the KL divergences)");
  const double inv_t = r.number("invTemperature");
  if (!(inv_t > 0.0) || !std::isfinite(inv_t)) throw_range(r.env(), std::string(r.fn()) + ": temperature must be a finite number > 0");
  const Reduction red = Reduction(r.integer("reduction", 0, 2));
  const int threads = read_threads(r);
  const bool with_grad = r.flag("withGrad");
  const DType gdt = read_grad_dtype(r, z.dtype);
  const double go = read_grad_output(r);
  const bool async = r.flag("async");
  const Array grad = read_grad(r, z, gdt, with_grad);
  const auto rows = size_t(z.rows);
  const Array losses = fresh(r, napi_float32_array, rows, "losses");
  const Array lse = fresh(r, napi_float32_array, rows, "lse");
  Ranges ranges;
  const int zr = ranges.read(z.data, "logits.data");
  ranges.read(target, "refLogits.data");
  ranges.write(grad, "out.data", alias_of(z, gdt, zr));
  ranges.check(r.env(), r.fn());

  Call call(r.env(), r.fn());
  call.pin(z.data, "logits.data");
  call.pin(target, "refLogits.data");
  call.pin(grad, "out.data");
  call.result("losses", losses);
  call.result("lse", lse);
  call.result("grad", grad);
  call.scratch(double(threads) * (double(z.vocab) * 8 + 65536));
  const int64_t count = z.rows;
  const fusedce::SoftArgs args{z.data.data, z.dtype, target.data, tdt, false, z.rows, z.vocab, fusedce::SoftOp::KlForward,
                               float(inv_t), 1.0, threads, nullptr};
  const fusedce::GradOut g{grad.present ? grad.data : nullptr, gdt, grad_scale(red, go, count), nullptr};
  auto* ld = static_cast<float*>(losses.data);
  auto* sd = static_cast<float*>(lse.data);
  auto totals = std::make_shared<std::pair<double, double>>(0.0, 0.0);
  return call.run(
      async,
      [=] {
        const double sum = fusedce::jsd_forward(args, beta, ld, sd, g);
        *totals = {reduce(red, sum, double(count)), sum};
      },
      [totals, count](Napi::Object o) {
        o.Set("loss", totals->first);
        o.Set("lossSum", totals->second);
        o.Set("count", double(count));
      });
}

// entropyForward({ fn, logits, dtype, rows, vocab, invTemperature, reduction, threads, withGrad, gradDtype,
//   out | null, gradOutput, async }) → { loss, lossSum, count, losses, lse: Float32Array(rows), grad? }
// Every row counts; 'mean' divides by rows.
Napi::Value EntropyForward(const Napi::CallbackInfo& info) {
  Request r(info, "entropyForward", {"logits", "dtype", "rows", "vocab", "invTemperature", "reduction", "threads",
                                     "withGrad", "gradDtype", "out", "gradOutput", "async"});
  const Matrix z = read_matrix(r);
  const double inv_t = r.number("invTemperature");
  if (!(inv_t > 0.0) || !std::isfinite(inv_t)) throw_range(r.env(), std::string(r.fn()) + ": temperature must be a finite number > 0");
  const Reduction red = Reduction(r.integer("reduction", 0, 2));
  const int threads = read_threads(r);
  const bool with_grad = r.flag("withGrad");
  const DType gdt = read_grad_dtype(r, z.dtype);
  const double go = read_grad_output(r);
  const bool async = r.flag("async");
  const Array grad = read_grad(r, z, gdt, with_grad);
  const auto rows = size_t(z.rows);
  const Array losses = fresh(r, napi_float32_array, rows, "losses");
  const Array lse = fresh(r, napi_float32_array, rows, "lse");
  Ranges ranges;
  const int zr = ranges.read(z.data, "logits.data");
  ranges.write(grad, "out.data", alias_of(z, gdt, zr));
  ranges.check(r.env(), r.fn());

  Call call(r.env(), r.fn());
  call.pin(z.data, "logits.data");
  call.pin(grad, "out.data");
  call.result("losses", losses);
  call.result("lse", lse);
  call.result("grad", grad);
  call.scratch(double(threads) * (double(z.vocab) / 256 * 32 + 65536));
  const int64_t count = z.rows;
  const fusedce::GradOut g{grad.present ? grad.data : nullptr, gdt, grad_scale(red, go, count), nullptr};
  const void* zd = z.data.data;
  const DType dt = z.dtype;
  const int64_t vocab = z.vocab;
  const float it = float(inv_t);
  auto* ld = static_cast<float*>(losses.data);
  auto* sd = static_cast<float*>(lse.data);
  auto totals = std::make_shared<std::pair<double, double>>(0.0, 0.0);
  return call.run(
      async,
      [=] {
        const double sum = fusedce::entropy_forward(zd, dt, count, vocab, it, threads, ld, sd, g);
        *totals = {reduce(red, sum, double(count)), sum};
      },
      [totals, count](Napi::Object o) {
        o.Set("loss", totals->first);
        o.Set("lossSum", totals->second);
        o.Set("count", double(count));
      });
}

// ---- binary cross-entropy ----------------------------------------------------------------------

// binaryCrossEntropy({ fn, logits, dtype, rows, vocab, targets: Float32Array(rows·vocab) in [0, 1],
//   posWeight: number | Float32Array(vocab) (copied), weight: Float32Array(rows·vocab) | Float32Array(vocab)
//   (a per-class one is copied) | null, reduction, threads, withGrad, gradDtype, out | null,
//   gradOutput, async })
//   → { loss, lossSum, count (elements), losses?: Float32Array(rows·vocab) with reduction 'none', grad? }
Napi::Value BinaryCrossEntropy(const Napi::CallbackInfo& info) {
  Request r(info, "binaryCrossEntropyWithLogits", {"logits", "dtype", "rows", "vocab", "targets", "posWeight", "weight", "reduction",
                               "threads", "withGrad", "out", "gradDtype", "gradOutput", "async"});
  const std::string fn = r.fn();
  const Matrix z = read_matrix(r);
  const double n = z.n();
  const Array y = r.array("targets", napi_float32_array, n);
  const auto reduction = Reduction(r.integer("reduction", 0, 2));
  const int threads = read_threads(r);
  Array pw_in;
  double pw_scalar = 1.0;
  if (r.value("posWeight").IsNumber()) {
    pw_scalar = r.number("posWeight");
    if (!(pw_scalar >= 0.0) || !std::isfinite(pw_scalar))
      throw_range(r.env(), fn + ": posWeight must be a finite number ≥ 0, but got " + std::to_string(pw_scalar));
  } else if (r.present("posWeight")) {
    pw_in = r.array("posWeight", napi_float32_array, double(z.vocab));
  }
  Array w_in;
  if (r.present("weight")) {
    w_in = r.array("weight", napi_float32_array, -1);
    if (double(w_in.length) != n && double(w_in.length) != double(z.vocab))
      throw_range(r.env(), fn + ": weight must have length rows·vocab (" + std::to_string(int64_t(n)) + ") or vocab (" +
                               std::to_string(z.vocab) + "), but has length " + std::to_string(w_in.length));
  }
  const bool per_class = w_in.present && double(w_in.length) != n;
  const bool with_grad = r.flag("withGrad");
  const DType gdt = read_grad_dtype(r, z.dtype);
  const double go = read_grad_output(r);
  const bool async = r.flag("async");

  const auto* yd = static_cast<const float*>(y.data);
  if (const int64_t i = fusedce::first_outside(yd, int64_t(n), 0.0f, 1.0f, threads); i >= 0)
    throw_range(r.env(), fn + ": targets[" + std::to_string(i) + "] = " + std::to_string(yd[i]) + " must be in [0, 1]");
  // posWeight ≥ 0; weight any finite number, negative included (torch's semantics)
  auto check = [&](const float* v, size_t m, const char* name, bool nonneg) {
    for (size_t i = 0; i < m; ++i)
      if (!std::isfinite(v[i]) || (nonneg && !(v[i] >= 0.0f)))
        throw_range(r.env(), fn + ": " + name + "[" + std::to_string(i) + "] = " + std::to_string(v[i]) +
                                 (nonneg ? " must be a finite number ≥ 0" : " must be a finite number"));
  };
  auto pw = std::make_shared<std::vector<float>>(copy_of<float>(pw_in));
  check(pw->data(), pw->size(), "posWeight", true);
  auto w_copy = std::make_shared<std::vector<float>>(per_class ? copy_of<float>(w_in) : std::vector<float>());
  const float* w = per_class ? w_copy->data() : static_cast<const float*>(w_in.data);
  if (w_in.present) check(w, w_in.length, "weight", false);

  const Array grad = read_grad(r, z, gdt, with_grad);
  const Array losses = reduction == Reduction::None ? fresh(r, napi_float32_array, size_t(n), "losses") : Array{};
  Ranges ranges;
  const int zr = ranges.read(z.data, "logits.data");
  ranges.read(y, "targets");
  ranges.read(pw_in, "posWeight");
  ranges.read(w_in, "weight");
  ranges.write(grad, "out.data", alias_of(z, gdt, zr));
  ranges.check(r.env(), r.fn());

  fusedce::BceArgs args{z.data.data, z.dtype, z.rows, z.vocab, yd, pw_in.present ? pw->data() : nullptr, float(pw_scalar),
                        w_in.present ? w : nullptr, per_class, threads};
  const double scale = reduction == Reduction::Mean ? (n > 0 ? go / n : 0.0) : go;
  const fusedce::BceOut out{static_cast<float*>(losses.data), {grad.present ? grad.data : nullptr, gdt, float(scale), nullptr}};
  Call call(r.env(), r.fn());
  call.pin(z.data, "logits.data");
  call.pin(y, "targets");
  if (!per_class) call.pin(w_in, "weight");
  call.pin(grad, "out.data");
  call.result("losses", losses);
  call.result("grad", grad);
  call.scratch(double(z.rows) * 8 + 65536);
  auto totals = std::make_shared<std::pair<double, double>>(0.0, 0.0);
  return call.run(
      async,
      [args, out, totals, reduction, n, pw, w_copy] {
        const double sum = fusedce::bce_forward(args, out);
        *totals = {reduce(reduction, sum, n), sum};
      },
      [totals, n](Napi::Object o) {
        o.Set("loss", totals->first);
        o.Set("lossSum", totals->second);
        o.Set("count", n);
      });
}

// ---- dtype conversions ----------------------------------------------------------------------------

// convert({ fn, input, out | null, kind, threads }) → { out }: kind 0 f32 → bf16, 1 f32 → f16
// (input Float32Array, out Uint16Array), 2 bf16 → f32, 3 f16 → f32 (input Uint16Array, out
// Float32Array); the same length, no overlap; out null: a fresh array. Sync only: it is memory
// bound, and over before an async round trip would be.
Napi::Value Convert(const Napi::CallbackInfo& info) {
  Request r(info, "convert", {"input", "out", "kind", "threads", "portable"});
  const auto kind = fusedce::ConvertKind(r.integer("kind", 0, 3));
  const bool narrow = kind == fusedce::ConvertKind::F32ToBf16 || kind == fusedce::ConvertKind::F32ToF16;
  const napi_typedarray_type dst_type = narrow ? napi_uint16_array : napi_float32_array;
  const Array src = r.array("input", narrow ? napi_float32_array : napi_uint16_array, -1);
  const int threads = read_threads(r);
  const Array dst = r.present("out") ? r.array("out", dst_type, double(src.length))
                                     : fresh(r, dst_type, src.length, "the converted array");
  Ranges ranges;
  ranges.read(src, "the input");
  ranges.write(dst, "out");
  ranges.check(r.env(), r.fn());
  Call call(r.env(), r.fn());
  call.result("out", dst);
  const void* s = src.data;
  void* d = dst.data;
  const auto n = int64_t(src.length);
  const bool portable = r.flag("portable");
  return call.run(false, [=] { fusedce::convert(s, d, n, kind, threads, portable); }, [](Napi::Object) {});
}

// ---- kernels for tests and benchmarks (exported as binding.kernels, not by the package) -------

// expKernel(x: Float32Array, y: Float32Array, repeat) → undefined: y = exp(x) with the active
// kernels' exp, `repeat` times (benchmarks keep x and y in L1 to measure the exp ceiling).
Napi::Value ExpKernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || !info[1].IsTypedArray()) throw_type(env, "expKernel: x and y must be Float32Arrays");
  const Array x = fusedce::glue::array_info(env, info[0]);
  const Array y = fusedce::glue::array_info(env, info[1]);
  if (x.type != napi_float32_array || y.type != napi_float32_array) throw_type(env, "expKernel: x and y must be Float32Arrays");
  if (y.length != x.length) throw_range(env, "expKernel: y must have the length of x");
  if (!info[2].IsNumber()) throw_type(env, "expKernel: repeat must be a number");
  const double rep = info[2].As<Napi::Number>().DoubleValue();
  if (!(rep >= 1 && rep <= 1e9) || rep != std::floor(rep)) throw_range(env, "expKernel: repeat must be an integer in [1, 1e9]");
  const auto& k = fusedce::active_kernels();
  for (int64_t i = 0; i < int64_t(rep); ++i)
    k.exp(static_cast<const float*>(x.data), static_cast<float*>(y.data), int64_t(x.length));
  return env.Undefined();
}

// expCeilingKernel(repeat, threads) → number: the exp ceiling of the pool. Every task runs the
// active kernels' exp 16 times over its thread's own L1-resident buffer of 4096 floats (x in
// [−20, 0], the range cross-entropy exponentiates); threads·repeat passes are cut into such tasks
// and claimed from the pool like a forward's rows, so the time of this call is what the pool
// can do with exp at `threads`, neighbours and frequency included. Returns the elements
// exponentiated (threads · ⌈repeat/16⌉ · 16 · 4096); the caller times the call.
Napi::Value ExpCeilingKernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto integer = [&](size_t i, const char* name, double hi) {
    if (!info[i].IsNumber()) throw_type(env, std::string("expCeilingKernel: ") + name + " must be a number");
    const double d = info[i].As<Napi::Number>().DoubleValue();
    if (!(d >= 1 && d <= hi) || d != std::floor(d))
      throw_range(env, std::string("expCeilingKernel: ") + name + " must be an integer in [1, " + std::to_string(int64_t(hi)) + "]");
    return int64_t(d);
  };
  const int64_t repeat = integer(0, "repeat", 1e9);
  const int threads = int(integer(1, "threads", 65536));
  constexpr int64_t kN = 4096, kPerTask = 16;
  const int64_t tasks = int64_t(threads) * ((repeat + kPerTask - 1) / kPerTask);
  const auto& k = fusedce::active_kernels();
  try {
    fusedce::parallel_for(tasks, threads, [&](int64_t) {
      thread_local std::vector<float> x, y;
      if (x.empty()) {
        x.resize(kN);
        y.resize(kN);
        for (int64_t i = 0; i < kN; ++i) x[size_t(i)] = -20.0f * float(std::fmod(double(i) * 0.618, 1.0));
      }
      for (int64_t i = 0; i < kPerTask; ++i) k.exp(x.data(), y.data(), kN);
    });
  } catch (const std::bad_alloc&) {
    throw_range(env, "expCeilingKernel: out of memory");
  }
  return Napi::Number::New(env, double(tasks * kPerTask * kN));
}

// readKernel(data: TypedArray, threads) → number: a streaming read of data (a sum of its 64-bit
// words, in 1 MiB chunks over the pool), the benchmark's read-bandwidth ceiling. The sum is
// returned so the reads cannot be optimised away.
Napi::Value ReadKernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw_type(env, "readKernel: data must be a typed array");
  const Array arr = fusedce::glue::array_info(env, info[0]);
  if (!info[1].IsNumber()) throw_type(env, "readKernel: threads must be a number");
  const double td = info[1].As<Napi::Number>().DoubleValue();
  if (!(td >= 1 && td <= 65536) || td != std::floor(td)) throw_range(env, "readKernel: threads must be an integer in [1, 65536]");
  if (reinterpret_cast<uintptr_t>(arr.data) % 8 != 0) throw_range(env, "readKernel: data must start at a multiple of 8 bytes");
  const auto* words = static_cast<const uint64_t*>(arr.data);
  const int64_t n = int64_t(arr.bytes / 8), chunk = (int64_t(1) << 20) / 8;
  const int64_t chunks = (n + chunk - 1) / chunk;
  std::vector<uint64_t> sums(size_t(std::max<int64_t>(chunks, 1)), 0);
  fusedce::parallel_for(chunks, int(td), [&](int64_t c) {
    const uint64_t* p = words + c * chunk;
    const int64_t m = std::min(chunk, n - c * chunk);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t j = 0;
    for (; j + 4 <= m; j += 4) s0 += p[j], s1 += p[j + 1], s2 += p[j + 2], s3 += p[j + 3];
    for (; j < m; ++j) s0 += p[j];
    sums[size_t(c)] = s0 + s1 + s2 + s3;
  });
  uint64_t total = 0;
  for (uint64_t v : sums) total += v;
  return Napi::Number::New(env, double(total & 0xFFFFFFFFu));
}

// poolFault(n, threads, failAt) → n: runs n pool tasks, task failAt (if in [0, n)) throwing
// std::bad_alloc, as a driver's vector would; tests that parallel_for rethrows it on the caller
// (a RangeError here) after every helper has let go of the job, and that the pool still works.
Napi::Value PoolFault(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  for (int i = 0; i < 3; ++i)
    if (!info[i].IsNumber()) throw_type(env, "kernels.poolFault: n, threads and failAt must be numbers");
  const int64_t n = std::min<int64_t>(std::max<int64_t>(info[0].As<Napi::Number>().Int64Value(), 0), 1 << 20);
  const int threads = int(std::min<int64_t>(std::max<int64_t>(info[1].As<Napi::Number>().Int64Value(), 1), 65536));
  const int64_t fail_at = info[2].As<Napi::Number>().Int64Value();
  std::atomic<int64_t> ran{0};
  try {
    fusedce::parallel_for(n, threads, [&](int64_t i) {
      if (i == fail_at) throw std::bad_alloc();
      ran.fetch_add(1);
    });
  } catch (const std::bad_alloc&) {
    throw_range(env, "kernels.poolFault: out of memory (task " + std::to_string(fail_at) + ")");
  }
  return Napi::Number::New(env, double(ran.load()));
}

Napi::Value Backend(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), fusedce::active_kernels().name);
}

Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
  const fusedce::CpuFeatures f = fusedce::cpu_features();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("avx2", f.avx2);
  o.Set("fma", f.fma);
  o.Set("f16c", f.f16c);
  o.Set("avx512", f.avx512);
  o.Set("avx512bf16", f.avx512bf16);
  return o;
}

Napi::Value HardwareThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), fusedce::hardware_threads());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  fusedce::glue::init_env(env);
  exports.Set("setHooks", Napi::Function::New(env, fusedce::glue::SetHooks, "setHooks"));
  exports.Set("crossEntropyForward", Napi::Function::New(env, Forward, "crossEntropyForward"));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, Backward, "crossEntropyBackward"));
  exports.Set("softForward", Napi::Function::New(env, SoftForward, "softForward"));
  exports.Set("softBackward", Napi::Function::New(env, SoftBackward, "softBackward"));
  exports.Set("entropy", Napi::Function::New(env, Entropy, "entropy"));
  exports.Set("entropyForward", Napi::Function::New(env, EntropyForward, "entropyForward"));
  exports.Set("jsdForward", Napi::Function::New(env, JsdForward, "jsdForward"));
  exports.Set("binaryCrossEntropy", Napi::Function::New(env, BinaryCrossEntropy, "binaryCrossEntropy"));
  exports.Set("convert", Napi::Function::New(env, Convert, "convert"));
  exports.Set("backend", Napi::Function::New(env, Backend, "backend"));
  Napi::Object kernels = Napi::Object::New(env);
  kernels.Set("exp", Napi::Function::New(env, ExpKernel, "expKernel"));
  kernels.Set("expCeiling", Napi::Function::New(env, ExpCeilingKernel, "expCeilingKernel"));
  kernels.Set("read", Napi::Function::New(env, ReadKernel, "readKernel"));
  kernels.Set("poolFault", Napi::Function::New(env, PoolFault, "poolFault"));
  exports.Set("kernels", kernels);
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures, "cpuFeatures"));
  exports.Set("hardwareThreads", Napi::Function::New(env, HardwareThreads, "hardwareThreads"));
  exports.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  return exports;
}

}  // namespace

NODE_API_MODULE(fusedce, Init)
