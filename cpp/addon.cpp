// N-API glue: the allocating layer over the out-param core in fusedce.h.
//
// The TypeScript facade (ts/) validates arguments and gives the user-facing messages; this file
// re-checks every invariant a kernel relies on (array types, lengths, shapes, targets in range,
// output aliasing) so that no call through the raw binding can reach a kernel with invalid state.
// Each entry point runs either synchronously or, with `async`, on the libuv thread pool and
// returns a Promise; inputs and outputs are kept referenced until the work is done.
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fusedce.h"
#include "thread_pool.h"

namespace {

using fusedce::DType;

[[noreturn]] void throw_type(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
[[noreturn]] void throw_range(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

const char* typed_array_name(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    default: return "a typed array of another kind";
  }
}

// Argument readers: every message has the shape "<fn>: <name> must be …, but got …".
struct Args {
  const Napi::CallbackInfo& info;
  const char* fn;

  Napi::Env env() const { return info.Env(); }

  Napi::TypedArray typed(size_t i, const char* name, napi_typedarray_type want, double want_len) const {
    Napi::Value v = info[i];
    if (!v.IsTypedArray())
      throw_type(env(), std::string(fn) + ": " + name + " must be a " + typed_array_name(want));
    Napi::TypedArray a = v.As<Napi::TypedArray>();
    if (a.TypedArrayType() != want)
      throw_type(env(), std::string(fn) + ": " + name + " must be a " + typed_array_name(want) + ", but got " +
                            typed_array_name(a.TypedArrayType()));
    if (double(a.ElementLength()) != want_len)
      throw_range(env(), std::string(fn) + ": " + name + " must have length " + std::to_string(int64_t(want_len)) +
                             ", but has length " + std::to_string(a.ElementLength()));
    return a;
  }
  bool present(size_t i) const { return !info[i].IsUndefined() && !info[i].IsNull(); }
  double number(size_t i, const char* name) const {
    if (!info[i].IsNumber()) throw_type(env(), std::string(fn) + ": " + name + " must be a number");
    return info[i].As<Napi::Number>().DoubleValue();
  }
  int64_t integer(size_t i, const char* name, double lo, double hi) const {
    const double d = number(i, name);
    if (!(d == std::floor(d)) || d < lo || d > hi)
      throw_range(env(), std::string(fn) + ": " + name + " must be an integer in [" + std::to_string(int64_t(lo)) +
                             ", " + std::to_string(int64_t(hi)) + "], but got " + std::to_string(d));
    return int64_t(d);
  }
  DType dtype(size_t i, const char* name) const { return DType(integer(i, name, 0, 2)); }
  bool boolean(size_t i) const { return info[i].ToBoolean().Value(); }
};

napi_typedarray_type array_type_for(DType d) { return d == DType::F32 ? napi_float32_array : napi_uint16_array; }

void* data_of(Napi::TypedArray a) {
  return static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
}

// Reads logits (data, dtype, rows, vocab) at i .. i+3 (vocab ≥ 1, data of rows·vocab elements).
struct Matrix {
  Napi::TypedArray data;
  DType dtype;
  int64_t rows, vocab;
};
Matrix read_matrix(const Args& a, size_t i, const char* name) {
  Matrix m;
  m.dtype = a.dtype(i + 1, "dtype");
  m.rows = a.integer(i + 2, "rows", 0, 9007199254740991.0);
  m.vocab = a.integer(i + 3, "vocab", 1, 2147483647.0);
  m.data = a.typed(i, name, array_type_for(m.dtype), double(m.rows) * double(m.vocab));
  return m;
}

bool overlaps(Napi::TypedArray x, Napi::TypedArray y) {
  const auto* xo = static_cast<const uint8_t*>(data_of(x));
  const auto* yo = static_cast<const uint8_t*>(data_of(y));
  return xo < yo + y.ByteLength() && yo < xo + x.ByteLength();
}

// Gradient destination of every op: a new array, or `out`, checked for type, length and aliasing.
// It may be the logits themselves with the same dtype (writing over them is only safe element for
// element: the same bytes, the same dtype), never one of the `others` inputs.
Napi::TypedArray grad_out(const Args& a, size_t i, const Matrix& z, DType gdt, const std::vector<Napi::TypedArray>& others) {
  const double n = double(z.rows) * double(z.vocab);
  if (!a.present(i)) {
    if (gdt == DType::F32) return Napi::Float32Array::New(a.env(), size_t(n));
    return Napi::Uint16Array::New(a.env(), size_t(n));
  }
  Napi::TypedArray g = a.typed(i, "out.data", array_type_for(gdt), n);
  if (overlaps(g, z.data) && !(data_of(g) == data_of(z.data) && gdt == z.dtype))
    throw_range(a.env(), std::string(a.fn) + ": out.data overlaps logits.data without being exactly it (with the "
                                             "same dtype); use inPlace: true to write the gradient over the logits");
  for (const auto& o : others)
    if (overlaps(g, o))
      throw_range(a.env(), std::string(a.fn) + ": out.data overlaps another input (the target or a weight); give it "
                                               "its own buffer");
  return g;
}

// The shared part of both ops' arguments: logits (rows, vocab), targets (rows,).
struct Problem : Matrix {
  Napi::TypedArray targets;
  int64_t count;
  int32_t ignore_index;
  fusedce::Reduction reduction;
  int threads;

  fusedce::Batch batch() const {
    return {data_of(data), dtype, rows, vocab, static_cast<const int32_t*>(data_of(targets)), ignore_index,
            threads, nullptr};
  }
};

Problem read_problem(const Args& a) {
  Problem p;
  static_cast<Matrix&>(p) = read_matrix(a, 0, "logits.data");
  p.targets = a.typed(4, "targets", napi_int32_array, double(p.rows));
  p.ignore_index = int32_t(a.integer(5, "ignoreIndex", -2147483648.0, 2147483647.0));
  p.reduction = fusedce::Reduction(a.integer(6, "reduction", 0, 2));
  p.threads = int(a.integer(7, "threads", 1, 65536));
  const auto* t = static_cast<const int32_t*>(data_of(p.targets));
  p.count = fusedce::count_targets(t, p.rows, p.vocab, p.ignore_index);
  if (p.count < 0) {
    const int64_t r = -1 - p.count;
    throw_range(a.env(), std::string(a.fn) + ": targets[" + std::to_string(r) + "] = " + std::to_string(t[r]) +
                             " is outside [0, " + std::to_string(p.vocab) + ") and is not ignoreIndex (" +
                             std::to_string(p.ignore_index) + ")");
  }
  return p;
}


// Gradient scale for reduction r with upstream gradient go: mean → go/count, sum/none → go.
float grad_scale(fusedce::Reduction r, double go, int64_t count) {
  if (r == fusedce::Reduction::Mean) return count > 0 ? float(go / double(count)) : 0.0f;
  return float(go);
}

// Runs `work` now (sync) or on the libuv pool (async); `done` returns the result on the JS thread.
// While async work runs, the worker holds references to `inputs` and `done` to the outputs, so the
// garbage collector cannot free memory a kernel is using.
class Worker : public Napi::AsyncWorker {
 public:
  Worker(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
         const std::vector<Napi::Object>& inputs)
      : Napi::AsyncWorker(env, "fusedce"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), done_(std::move(done)) {
    for (const auto& o : inputs) inputs_.push_back(Napi::Persistent(o));
  }
  Napi::Promise promise() const { return deferred_.Promise(); }
  void Execute() override { work_(); }
  void OnOK() override { deferred_.Resolve(done_(Env())); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::vector<Napi::ObjectReference> inputs_;
};

Napi::Value run(Napi::Env env, bool async, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
                const std::vector<Napi::Object>& inputs) {
  if (!async) {
    work();
    return done(env);
  }
  auto* w = new Worker(env, std::move(work), std::move(done), inputs);
  Napi::Promise pr = w->promise();
  w->Queue();
  return pr;
}

// The options of cross_entropy_forward_opt / _backward_opt, from a plain object (or null):
//   { labelSmoothing, weight: Float32Array(vocab) | null, zLoss, logitScale, softcap }
// Values are checked here (finite, in range); the facade gives the same messages.
struct OptionArgs {
  bool any = false;
  fusedce::CeOptions opt;
  Napi::TypedArray weight;
};

OptionArgs read_ce_options(const Args& a, size_t i, const Problem& p) {
  OptionArgs o;
  if (!a.present(i)) return o;
  if (!a.info[i].IsObject()) throw_type(a.env(), std::string(a.fn) + ": options must be an object or null");
  Napi::Object obj = a.info[i].As<Napi::Object>();
  auto num = [&](const char* name, double fallback, double lo, double hi, bool lo_open) -> double {
    Napi::Value v = obj.Get(name);
    if (v.IsUndefined() || v.IsNull()) return fallback;
    if (!v.IsNumber()) throw_type(a.env(), std::string(a.fn) + ": " + name + " must be a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || d < lo || d > hi || (lo_open && d == lo))
      throw_range(a.env(), std::string(a.fn) + ": " + name + " must be a finite number in " + (lo_open ? "(" : "[") +
                               std::to_string(lo) + ", " + std::to_string(hi) + "], but got " + std::to_string(d));
    return d;
  };
  o.opt.label_smoothing = float(num("labelSmoothing", 0.0, 0.0, 1.0, false));
  o.opt.z_loss = float(num("zLoss", 0.0, 0.0, 1e30, false));
  o.opt.logit_scale = float(num("logitScale", 1.0, -1e30, 1e30, false));
  o.opt.softcap = float(num("softcap", 0.0, 0.0, 1e30, false));
  o.opt.weight_total = double(p.vocab);
  Napi::Value wv = obj.Get("weight");
  if (!wv.IsUndefined() && !wv.IsNull()) {
    if (!wv.IsTypedArray() || wv.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw_type(a.env(), std::string(a.fn) + ": weight must be a Float32Array of length vocab");
    o.weight = wv.As<Napi::TypedArray>();
    if (double(o.weight.ElementLength()) != double(p.vocab))
      throw_range(a.env(), std::string(a.fn) + ": weight must have length vocab (" + std::to_string(p.vocab) +
                               "), but has length " + std::to_string(o.weight.ElementLength()));
    const auto* w = static_cast<const float*>(data_of(o.weight));
    double total = 0.0;
    for (int64_t j = 0; j < p.vocab; ++j) {
      if (!(w[j] >= 0.0f) || !std::isfinite(w[j]))
        throw_range(a.env(), std::string(a.fn) + ": weight[" + std::to_string(j) + "] = " + std::to_string(w[j]) +
                                 " must be a finite number ≥ 0");
      total += double(w[j]);
    }
    o.opt.weight = w;
    o.opt.weight_total = total;
  }
  o.any = o.opt.label_smoothing != 0.0f || o.opt.weight || o.opt.z_loss != 0.0f || o.opt.logit_scale != 1.0f ||
          o.opt.softcap != 0.0f;
  return o;
}

// The mean's denominators: D = Σ w[t_i] over counted rows (N without weights), N = counted rows.
fusedce::CeNorm ce_norm(const Problem& p, const OptionArgs& o, double* weight_sum) {
  double D = double(p.count);
  if (o.opt.weight) {
    D = 0.0;
    const auto* t = static_cast<const int32_t*>(data_of(p.targets));
    for (int64_t r = 0; r < p.rows; ++r)
      if (t[r] != p.ignore_index) D += double(o.opt.weight[t[r]]);
  }
  *weight_sum = D;
  if (p.reduction != fusedce::Reduction::Mean) return {1.0, 1.0};
  return {D > 0.0 ? 1.0 / D : 0.0, p.count > 0 ? 1.0 / double(p.count) : 0.0};
}

// crossEntropyForward(logits, dtype, rows, vocab, targets, ignoreIndex, reduction, threads,
//                     withGrad, gradDtype, gradOut|null, gradOutput, async, options|null, stats)
//   → { losses: Float32Array(rows), lse: Float32Array(rows), lossSum, count, grad?,
//       with options or stats: ceSum, zSum, weightSum, and with stats argmax: Int32Array(rows),
//       entropy, targetLogprob, maxProb: Float32Array(rows) }
// Without options and stats this is the plain kernel (cross_entropy.cpp), untouched by them.
Napi::Value Forward(const Napi::CallbackInfo& info) {
  Args a{info, "crossEntropyForward"};
  Problem p = read_problem(a);
  const bool with_grad = a.boolean(8);
  const DType gdt = a.dtype(9, "gradDtype");
  const double go = a.number(11, "gradOutput");
  const bool async = a.boolean(12);
  const OptionArgs oa = read_ce_options(a, 13, p);
  const bool stats = a.boolean(14);
  const bool general = oa.any || stats;

  Napi::Float32Array losses = Napi::Float32Array::New(a.env(), size_t(p.rows));
  Napi::Float32Array lse = Napi::Float32Array::New(a.env(), size_t(p.rows));
  Napi::TypedArray grad;
  if (with_grad) grad = grad_out(a, 10, p, gdt, {});

  // The result object is built now, on the JS thread; the work only adds the sums to it.
  Napi::Object result = Napi::Object::New(a.env());
  result.Set("losses", losses);
  result.Set("lse", lse);
  result.Set("count", Napi::Number::New(a.env(), double(p.count)));
  if (with_grad) result.Set("grad", grad);
  std::vector<Napi::Object> inputs{p.data, p.targets};
  if (!oa.weight.IsEmpty()) inputs.push_back(oa.weight);

  if (!general) {
    fusedce::ForwardArgs fa{p.batch(), losses.Data(), lse.Data(),
                            {with_grad ? data_of(grad) : nullptr, gdt, grad_scale(p.reduction, go, p.count), nullptr}};
    auto totals = std::make_shared<fusedce::ForwardTotals>();
    auto result_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(result));
    return run(
        a.env(), async, [fa, totals] { *totals = fusedce::cross_entropy_forward(fa); },
        [totals, result_ref](Napi::Env env) -> Napi::Value {
          Napi::Object r = result_ref->Value();
          r.Set("lossSum", Napi::Number::New(env, totals->loss_sum));
          return r;
        },
        inputs);
  }

  double weight_sum = 0.0;
  fusedce::ForwardOptArgs fa;
  fa.base = {p.batch(), losses.Data(), lse.Data(), {with_grad ? data_of(grad) : nullptr, gdt, float(go), nullptr}};
  fa.opt = oa.opt;
  fa.norm = ce_norm(p, oa, &weight_sum);
  if (stats) {
    Napi::Int32Array argmax = Napi::Int32Array::New(a.env(), size_t(p.rows));
    Napi::Float32Array entropy = Napi::Float32Array::New(a.env(), size_t(p.rows));
    Napi::Float32Array tlp = Napi::Float32Array::New(a.env(), size_t(p.rows));
    Napi::Float32Array maxp = Napi::Float32Array::New(a.env(), size_t(p.rows));
    fa.stats = {argmax.Data(), entropy.Data(), tlp.Data(), maxp.Data()};
    result.Set("argmax", argmax);
    result.Set("entropy", entropy);
    result.Set("targetLogprob", tlp);
    result.Set("maxProb", maxp);
  }
  result.Set("weightSum", Napi::Number::New(a.env(), weight_sum));
  auto totals = std::make_shared<fusedce::ForwardOptTotals>();
  auto result_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(result));
  return run(
      a.env(), async, [fa, totals] { *totals = fusedce::cross_entropy_forward_opt(fa); },
      [totals, result_ref](Napi::Env env) -> Napi::Value {
        Napi::Object r = result_ref->Value();
        r.Set("lossSum", Napi::Number::New(env, totals->ce_sum + totals->z_sum));
        r.Set("ceSum", Napi::Number::New(env, totals->ce_sum));
        r.Set("zSum", Napi::Number::New(env, totals->z_sum));
        return r;
      },
      inputs);
}

// crossEntropyBackward(logits, dtype, rows, vocab, targets, ignoreIndex, reduction, threads,
//                      lse, gradOutput, gradOutputRows|null, gradDtype, gradOut|null, async, options|null)
//   → grad data (typed array, (rows, vocab))
Napi::Value Backward(const Napi::CallbackInfo& info) {
  Args a{info, "crossEntropyBackward"};
  Problem p = read_problem(a);
  Napi::TypedArray lse = a.typed(8, "lse", napi_float32_array, double(p.rows));
  const double go = a.number(9, "gradOutput");
  Napi::TypedArray row_go;
  const bool per_row = a.present(10);
  if (per_row) {
    if (p.reduction != fusedce::Reduction::None)
      throw_type(a.env(), "crossEntropyBackward: a per-row gradOutput (Float32Array) needs reduction 'none'");
    row_go = a.typed(10, "gradOutput", napi_float32_array, double(p.rows));
  }
  const DType gdt = a.dtype(11, "gradDtype");
  const bool async = a.boolean(13);
  Napi::TypedArray grad = grad_out(a, 12, p, gdt, {});

  const OptionArgs oa = read_ce_options(a, 14, p);

  const auto* row_scale = per_row ? static_cast<const float*>(data_of(row_go)) : nullptr;
  std::vector<Napi::Object> inputs{p.data, p.targets, lse};
  if (per_row) inputs.push_back(row_go);
  if (!oa.weight.IsEmpty()) inputs.push_back(oa.weight);
  auto grad_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(grad.As<Napi::Object>()));
  auto done = [grad_ref](Napi::Env) -> Napi::Value { return grad_ref->Value(); };
  if (!oa.any) {
    fusedce::BackwardArgs ba{p.batch(), static_cast<const float*>(data_of(lse)),
                             {data_of(grad), gdt, grad_scale(p.reduction, go, p.count), row_scale}};
    return run(a.env(), async, [ba] { fusedce::cross_entropy_backward(ba); }, done, inputs);
  }
  double weight_sum;
  const fusedce::CeNorm norm = ce_norm(p, oa, &weight_sum);
  fusedce::BackwardArgs ba{p.batch(), static_cast<const float*>(data_of(lse)), {data_of(grad), gdt, float(go), row_scale}};
  const fusedce::CeOptions opt = oa.opt;
  return run(a.env(), async, [ba, opt, norm] { fusedce::cross_entropy_backward_opt(ba, opt, norm); }, done, inputs);
}

// Checks a probability target (rows, vocab) f32: every value finite and ≥ 0, every row summing to 1
// within 1e-3 or all 0 (such a row counts nowhere). Returns the rows that count.
int64_t check_probs(const Args& a, const float* q, int64_t rows, int64_t vocab) {
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0;
    for (int64_t j = 0; j < vocab; ++j) {
      const float v = q[size_t(r) * size_t(vocab) + size_t(j)];
      if (!(v >= 0.0f) || !std::isfinite(v))
        throw_range(a.env(), std::string(a.fn) + ": target[" + std::to_string(r) + ", " + std::to_string(j) + "] = " +
                                 std::to_string(v) + " must be a finite probability ≥ 0 (targetKind 'probs')");
      sum += double(v);
    }
    if (sum == 0.0) continue;
    if (std::fabs(sum - 1.0) > 1e-3)
      throw_range(a.env(), std::string(a.fn) + ": target row " + std::to_string(r) + " sums to " + std::to_string(sum) +
                               "; with targetKind 'probs' each row must sum to 1 (or be all 0 to be ignored). "
                               "For teacher logits use targetKind 'logits'");
    ++count;
  }
  return count;
}

// The shared arguments of softForward / softBackward:
//   (logits, dtype, rows, vocab, target, targetDtype (−1: f32 probabilities), op, invTemperature,
//    lossFactor, reduction, threads, …)
struct SoftProblem {
  Matrix z;
  Napi::TypedArray target;
  fusedce::SoftArgs args;
  fusedce::Reduction reduction;
  int64_t count;
};
SoftProblem read_soft(const Args& a) {
  SoftProblem sp;
  sp.z = read_matrix(a, 0, "logits.data");
  const int64_t tdt = a.integer(5, "targetDtype", -1, 2);
  const bool probs = tdt < 0;
  const double n = double(sp.z.rows) * double(sp.z.vocab);
  sp.target = a.typed(4, "target.data", probs ? napi_float32_array : array_type_for(DType(tdt)), n);
  const int64_t op = a.integer(6, "op", 0, 2);
  const double inv_t = a.number(7, "invTemperature");
  const double factor = a.number(8, "lossFactor");
  if (!(inv_t > 0.0) || !std::isfinite(inv_t) || !std::isfinite(factor))
    throw_range(a.env(), std::string(a.fn) + ": temperature must be a finite number > 0");
  if (probs && op != 0) throw_type(a.env(), std::string(a.fn) + ": probability targets are for the soft cross-entropy only");
  sp.reduction = fusedce::Reduction(a.integer(9, "reduction", 0, 2));
  const int threads = int(a.integer(10, "threads", 1, 65536));
  // logits and target may share memory (both are only read); a gradient written over the logits
  // may not overlap the target (grad_out checks that)
  sp.count = probs ? check_probs(a, static_cast<const float*>(data_of(sp.target)), sp.z.rows, sp.z.vocab) : sp.z.rows;
  sp.args = {data_of(sp.z.data), sp.z.dtype, data_of(sp.target), probs ? DType::F32 : DType(tdt), probs,
             sp.z.rows, sp.z.vocab, fusedce::SoftOp(op), float(inv_t), factor, threads, nullptr};
  return sp;
}

// softForward(…shared (0–10), withGrad, gradDtype, gradOut|null, gradOutput, async)
//   → { losses: Float32Array(rows), lse: Float32Array(rows), lossSum, count, grad? }
// The user-facing name of a soft op, for messages: op 0 soft cross-entropy, 1–2 KL.
const char* soft_name(const Napi::CallbackInfo& info, bool backward) {
  if (backward) return "softCrossEntropyBackward";
  return info[6].IsNumber() && info[6].As<Napi::Number>().Int32Value() != 0 ? "klDivergenceForward" : "softCrossEntropyForward";
}

Napi::Value SoftForward(const Napi::CallbackInfo& info) {
  Args a{info, soft_name(info, false)};
  SoftProblem sp = read_soft(a);
  const bool with_grad = a.boolean(11);
  const DType gdt = a.dtype(12, "gradDtype");
  const double go = a.number(14, "gradOutput");
  const bool async = a.boolean(15);
  Napi::Float32Array losses = Napi::Float32Array::New(a.env(), size_t(sp.z.rows));
  Napi::Float32Array lse = Napi::Float32Array::New(a.env(), size_t(sp.z.rows));
  Napi::TypedArray grad;
  if (with_grad) grad = grad_out(a, 13, sp.z, gdt, {sp.target});
  Napi::Object result = Napi::Object::New(a.env());
  result.Set("losses", losses);
  result.Set("lse", lse);
  result.Set("count", Napi::Number::New(a.env(), double(sp.count)));
  if (with_grad) result.Set("grad", grad);
  fusedce::SoftForwardOut out{losses.Data(), lse.Data(),
                              {with_grad ? data_of(grad) : nullptr, gdt, grad_scale(sp.reduction, go, sp.count), nullptr}};
  const fusedce::SoftArgs args = sp.args;
  auto totals = std::make_shared<fusedce::SoftTotals>();
  auto result_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(result));
  return run(
      a.env(), async, [args, out, totals] { *totals = fusedce::soft_forward(args, out); },
      [totals, result_ref](Napi::Env env) -> Napi::Value {
        Napi::Object r = result_ref->Value();
        r.Set("lossSum", Napi::Number::New(env, totals->loss_sum));
        return r;
      },
      {sp.z.data, sp.target});
}

// softBackward(…shared (0–10), lse, gradOutput, gradOutputRows|null, gradDtype, gradOut|null, async) → grad data
Napi::Value SoftBackward(const Napi::CallbackInfo& info) {
  Args a{info, soft_name(info, true)};
  SoftProblem sp = read_soft(a);
  if (sp.args.op == fusedce::SoftOp::KlReverse)
    throw_type(a.env(), "softCrossEntropyBackward: the reverse KL has no separate backward; use withGrad on the forward");
  Napi::TypedArray lse = a.typed(11, "lse", napi_float32_array, double(sp.z.rows));
  const double go = a.number(12, "gradOutput");
  Napi::TypedArray row_go;
  const bool per_row = a.present(13);
  if (per_row) {
    if (sp.reduction != fusedce::Reduction::None)
      throw_type(a.env(), "softCrossEntropyBackward: a per-row gradOutput (Float32Array) needs reduction 'none'");
    row_go = a.typed(13, "gradOutput", napi_float32_array, double(sp.z.rows));
  }
  const DType gdt = a.dtype(14, "gradDtype");
  const bool async = a.boolean(16);
  std::vector<Napi::TypedArray> others{sp.target, lse};
  if (per_row) others.push_back(row_go);
  Napi::TypedArray grad = grad_out(a, 15, sp.z, gdt, others);
  const fusedce::GradOut g{data_of(grad), gdt, grad_scale(sp.reduction, go, sp.count),
                           per_row ? static_cast<const float*>(data_of(row_go)) : nullptr};
  const fusedce::SoftArgs args = sp.args;
  const auto* l = static_cast<const float*>(data_of(lse));
  std::vector<Napi::Object> inputs{sp.z.data, sp.target, lse};
  if (per_row) inputs.push_back(row_go);
  auto grad_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(grad.As<Napi::Object>()));
  return run(
      a.env(), async, [args, l, g] { fusedce::soft_backward(args, l, g); },
      [grad_ref](Napi::Env) -> Napi::Value { return grad_ref->Value(); }, inputs);
}

// entropy(logits, dtype, rows, vocab, invTemperature, threads, async) → Float32Array(rows)
Napi::Value Entropy(const Napi::CallbackInfo& info) {
  Args a{info, "entropy"};
  Matrix z = read_matrix(a, 0, "logits.data");
  const double inv_t = a.number(4, "invTemperature");
  if (!(inv_t > 0.0) || !std::isfinite(inv_t)) throw_range(a.env(), "entropy: temperature must be a finite number > 0");
  const int threads = int(a.integer(5, "threads", 1, 65536));
  const bool async = a.boolean(6);
  Napi::Float32Array out = Napi::Float32Array::New(a.env(), size_t(z.rows));
  auto out_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(out.As<Napi::Object>()));
  const void* zd = data_of(z.data);
  float* od = out.Data();
  const DType dt = z.dtype;
  const int64_t rows = z.rows, vocab = z.vocab;
  const float it = float(inv_t);
  return run(
      a.env(), async, [=] { fusedce::entropy_rows(zd, dt, rows, vocab, it, threads, od); },
      [out_ref](Napi::Env) -> Napi::Value { return out_ref->Value(); }, {z.data});
}

// binaryCrossEntropy(logits, dtype, rows, vocab, targets: Float32Array(rows·vocab),
//                    posWeight: number | Float32Array(vocab), weight: Float32Array(rows·vocab | vocab) | null,
//                    reduction, threads, withGrad, gradDtype, gradOut|null, gradOutput, async)
//   → { lossSum, count (elements), losses?: Float32Array(rows·vocab) with reduction 'none', grad? }
Napi::Value BinaryCrossEntropy(const Napi::CallbackInfo& info) {
  Args a{info, "binaryCrossEntropyWithLogits"};
  Matrix z = read_matrix(a, 0, "logits.data");
  const double n = double(z.rows) * double(z.vocab);
  Napi::TypedArray y = a.typed(4, "targets", napi_float32_array, n);
  const auto* yd = static_cast<const float*>(data_of(y));
  for (size_t i = 0; i < size_t(n); ++i)
    if (!(yd[i] >= 0.0f && yd[i] <= 1.0f))
      throw_range(a.env(), "binaryCrossEntropyWithLogits: targets[" + std::to_string(i) + "] = " + std::to_string(yd[i]) +
                               " must be in [0, 1]");
  auto check_nonneg = [&](const float* v, size_t m, const char* name) {
    for (size_t i = 0; i < m; ++i)
      if (!(v[i] >= 0.0f) || !std::isfinite(v[i]))
        throw_range(a.env(), std::string("binaryCrossEntropyWithLogits: ") + name + "[" + std::to_string(i) + "] = " +
                                 std::to_string(v[i]) + " must be a finite number ≥ 0");
  };
  fusedce::BceArgs args{data_of(z.data), z.dtype, z.rows, z.vocab, yd, nullptr, 1.0f, nullptr, false, 1};
  std::vector<Napi::Object> inputs{z.data, y};
  std::vector<Napi::TypedArray> others{y};
  if (info[5].IsNumber()) {
    const double pw = info[5].As<Napi::Number>().DoubleValue();
    if (!(pw >= 0.0) || !std::isfinite(pw))
      throw_range(a.env(), "binaryCrossEntropyWithLogits: posWeight must be a finite number ≥ 0, but got " + std::to_string(pw));
    args.pos_weight_scalar = float(pw);
  } else {
    Napi::TypedArray pw = a.typed(5, "posWeight", napi_float32_array, double(z.vocab));
    args.pos_weight = static_cast<const float*>(data_of(pw));
    check_nonneg(args.pos_weight, size_t(z.vocab), "posWeight");
    inputs.push_back(pw);
    others.push_back(pw);
  }
  if (a.present(6)) {
    if (!info[6].IsTypedArray()) throw_type(a.env(), "binaryCrossEntropyWithLogits: weight must be a Float32Array");
    const double len = double(info[6].As<Napi::TypedArray>().ElementLength());
    if (len != n && len != double(z.vocab))
      throw_range(a.env(), "binaryCrossEntropyWithLogits: weight must have length rows·vocab (" + std::to_string(int64_t(n)) +
                               ") or vocab (" + std::to_string(z.vocab) + "), but has length " + std::to_string(int64_t(len)));
    Napi::TypedArray w = a.typed(6, "weight", napi_float32_array, len);
    args.weight = static_cast<const float*>(data_of(w));
    args.weight_per_class = len != n;
    check_nonneg(args.weight, size_t(len), "weight");
    inputs.push_back(w);
    others.push_back(w);
  }
  const auto reduction = fusedce::Reduction(a.integer(7, "reduction", 0, 2));
  args.threads = int(a.integer(8, "threads", 1, 65536));
  const bool with_grad = a.boolean(9);
  const DType gdt = a.dtype(10, "gradDtype");
  const double go = a.number(12, "gradOutput");
  const bool async = a.boolean(13);
  Napi::Object result = Napi::Object::New(a.env());
  result.Set("count", Napi::Number::New(a.env(), n));
  Napi::Float32Array losses;
  if (reduction == fusedce::Reduction::None) {
    losses = Napi::Float32Array::New(a.env(), size_t(n));
    result.Set("losses", losses);
  }
  Napi::TypedArray grad;
  if (with_grad) {
    grad = grad_out(a, 11, z, gdt, others);
    result.Set("grad", grad);
  }
  const double scale = reduction == fusedce::Reduction::Mean ? (n > 0 ? go / n : 0.0) : go;
  fusedce::BceOut out{losses.IsEmpty() ? nullptr : losses.Data(), {with_grad ? data_of(grad) : nullptr, gdt, float(scale), nullptr}};
  auto total = std::make_shared<double>(0.0);
  auto result_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(result));
  return run(
      a.env(), async, [args, out, total] { *total = fusedce::bce_forward(args, out); },
      [total, result_ref](Napi::Env env) -> Napi::Value {
        Napi::Object r = result_ref->Value();
        r.Set("lossSum", Napi::Number::New(env, *total));
        return r;
      },
      inputs);
}

// expKernel(x: Float32Array, y: Float32Array, repeat) → undefined: y = exp(x) with the active
// kernels' exp, `repeat` times (benchmarks keep x and y in L1 to measure the exp ceiling).
Napi::Value ExpKernel(const Napi::CallbackInfo& info) {
  Args a{info, "expKernel"};
  if (!info[0].IsTypedArray()) throw_type(a.env(), "expKernel: x must be a Float32Array");
  const double n = double(info[0].As<Napi::TypedArray>().ElementLength());
  Napi::TypedArray x = a.typed(0, "x", napi_float32_array, n);
  Napi::TypedArray y = a.typed(1, "y", napi_float32_array, n);
  const int64_t repeat = a.integer(2, "repeat", 1, 1e9);
  const auto& k = fusedce::active_kernels();
  for (int64_t i = 0; i < repeat; ++i)
    k.exp(static_cast<const float*>(data_of(x)), static_cast<float*>(data_of(y)), int64_t(n));
  return info.Env().Undefined();
}

// expCeilingKernel(repeat, threads) → number: the exp ceiling of the pool. Every task runs the
// active kernels' exp 16 times over its thread's own L1-resident buffer of 4096 floats (x in
// [−20, 0], the range cross-entropy exponentiates); threads·repeat passes are cut into such tasks
// and claimed from the pool like a forward's rows, so the time of this call is what the pool
// can do with exp at `threads`, neighbours and frequency included. Returns the elements
// exponentiated (threads · ⌈repeat/16⌉ · 16 · 4096); the caller times the call.
Napi::Value ExpCeilingKernel(const Napi::CallbackInfo& info) {
  Args a{info, "expCeilingKernel"};
  const int64_t repeat = a.integer(0, "repeat", 1, 1e9);
  const int threads = int(a.integer(1, "threads", 1, 65536));
  constexpr int64_t kN = 4096, kPerTask = 16;
  const int64_t tasks = int64_t(threads) * ((repeat + kPerTask - 1) / kPerTask);
  const auto& k = fusedce::active_kernels();
  fusedce::parallel_for(tasks, threads, [&](int64_t) {
    thread_local std::vector<float> x, y;
    if (x.empty()) {
      x.resize(kN);
      y.resize(kN);
      for (int64_t i = 0; i < kN; ++i) x[size_t(i)] = -20.0f * float(std::fmod(double(i) * 0.618, 1.0));
    }
    for (int64_t i = 0; i < kPerTask; ++i) k.exp(x.data(), y.data(), kN);
  });
  return Napi::Number::New(info.Env(), double(tasks * kPerTask * kN));
}

// readKernel(data: TypedArray, threads) → number: a streaming read of data (a sum of its 64-bit
// words, in 1 MiB chunks over the pool), the benchmark's read-bandwidth ceiling. The sum is
// returned so the reads cannot be optimised away.
Napi::Value ReadKernel(const Napi::CallbackInfo& info) {
  Args a{info, "readKernel"};
  if (!info[0].IsTypedArray()) throw_type(a.env(), "readKernel: data must be a typed array");
  const auto arr = info[0].As<Napi::TypedArray>();
  const int threads = int(a.integer(1, "threads", 1, 65536));
  const auto* words = static_cast<const uint64_t*>(data_of(arr));
  const int64_t n = int64_t(arr.ByteLength() / 8), chunk = (int64_t(1) << 20) / 8;
  const int64_t chunks = (n + chunk - 1) / chunk;
  std::vector<uint64_t> sums(size_t(std::max<int64_t>(chunks, 1)), 0);
  fusedce::parallel_for(chunks, threads, [&](int64_t c) {
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
  return Napi::Number::New(info.Env(), double(total & 0xFFFFFFFFu));
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
  exports.Set("crossEntropyForward", Napi::Function::New(env, Forward, "crossEntropyForward"));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, Backward, "crossEntropyBackward"));
  exports.Set("softForward", Napi::Function::New(env, SoftForward, "softForward"));
  exports.Set("softBackward", Napi::Function::New(env, SoftBackward, "softBackward"));
  exports.Set("entropy", Napi::Function::New(env, Entropy, "entropy"));
  exports.Set("binaryCrossEntropy", Napi::Function::New(env, BinaryCrossEntropy, "binaryCrossEntropy"));
  exports.Set("backend", Napi::Function::New(env, Backend, "backend"));
  exports.Set("expKernel", Napi::Function::New(env, ExpKernel, "expKernel"));
  exports.Set("expCeilingKernel", Napi::Function::New(env, ExpCeilingKernel, "expCeilingKernel"));
  exports.Set("readKernel", Napi::Function::New(env, ReadKernel, "readKernel"));
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures, "cpuFeatures"));
  exports.Set("hardwareThreads", Napi::Function::New(env, HardwareThreads, "hardwareThreads"));
  exports.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  return exports;
}

}  // namespace

NODE_API_MODULE(fusedce, Init)
