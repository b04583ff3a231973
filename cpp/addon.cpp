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

// The shared part of both ops' arguments: logits (rows, vocab), targets (rows,).
struct Problem {
  Napi::TypedArray logits, targets;
  DType dtype;
  int64_t rows, vocab, count;
  int32_t ignore_index;
  fusedce::Reduction reduction;
  int threads;

  fusedce::Batch batch() const {
    return {data_of(logits), dtype, rows, vocab, static_cast<const int32_t*>(data_of(targets)), ignore_index,
            threads, nullptr};
  }
};

Problem read_problem(const Args& a) {
  Problem p;
  p.dtype = a.dtype(1, "dtype");
  p.rows = a.integer(2, "rows", 0, 9007199254740991.0);
  p.vocab = a.integer(3, "vocab", 1, 2147483647.0);
  p.logits = a.typed(0, "logits.data", array_type_for(p.dtype), double(p.rows) * double(p.vocab));
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

// Gradient destination: a given typed array (checked for type, length and aliasing) or a new one.
Napi::TypedArray grad_array(const Args& a, size_t i, const Problem& p, DType gdt) {
  const double n = double(p.rows) * double(p.vocab);
  if (!a.present(i)) {
    if (gdt == DType::F32) return Napi::Float32Array::New(a.env(), size_t(n));
    return Napi::Uint16Array::New(a.env(), size_t(n));
  }
  Napi::TypedArray g = a.typed(i, "out.data", array_type_for(gdt), n);
  // Writing over the logits is only safe element for element: the same bytes, the same dtype.
  const auto* lo = static_cast<const uint8_t*>(data_of(p.logits));
  const auto* go = static_cast<const uint8_t*>(data_of(g));
  const size_t lb = p.logits.ByteLength(), gb = g.ByteLength();
  const bool overlap = lo < go + gb && go < lo + lb;
  if (overlap && !(lo == go && gdt == p.dtype))
    throw_range(a.env(), std::string(a.fn) + ": out.data overlaps logits.data without being exactly it (with the "
                                             "same dtype); use inPlace: true to write the gradient over the logits");
  return g;
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

// crossEntropyForward(logits, dtype, rows, vocab, targets, ignoreIndex, reduction, threads,
//                     withGrad, gradDtype, gradOut|null, gradOutput, async)
//   → { losses: Float32Array(rows), lse: Float32Array(rows), lossSum, count, grad? }
Napi::Value Forward(const Napi::CallbackInfo& info) {
  Args a{info, "crossEntropyForward"};
  Problem p = read_problem(a);
  const bool with_grad = a.boolean(8);
  const DType gdt = a.dtype(9, "gradDtype");
  const double go = a.number(11, "gradOutput");
  const bool async = a.boolean(12);

  Napi::Float32Array losses = Napi::Float32Array::New(a.env(), size_t(p.rows));
  Napi::Float32Array lse = Napi::Float32Array::New(a.env(), size_t(p.rows));
  Napi::TypedArray grad;
  if (with_grad) grad = grad_array(a, 10, p, gdt);

  fusedce::ForwardArgs fa{p.batch(), losses.Data(), lse.Data(),
                          {with_grad ? data_of(grad) : nullptr, gdt, grad_scale(p.reduction, go, p.count), nullptr}};

  // The result object is built now, on the JS thread; the work only adds lossSum to it.
  Napi::Object result = Napi::Object::New(a.env());
  result.Set("losses", losses);
  result.Set("lse", lse);
  result.Set("count", Napi::Number::New(a.env(), double(p.count)));
  if (with_grad) result.Set("grad", grad);
  auto totals = std::make_shared<fusedce::ForwardTotals>();
  auto result_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(result));
  return run(
      a.env(), async, [fa, totals] { *totals = fusedce::cross_entropy_forward(fa); },
      [totals, result_ref](Napi::Env env) -> Napi::Value {
        Napi::Object r = result_ref->Value();
        r.Set("lossSum", Napi::Number::New(env, totals->loss_sum));
        return r;
      },
      {p.logits, p.targets});
}

// crossEntropyBackward(logits, dtype, rows, vocab, targets, ignoreIndex, reduction, threads,
//                      lse, gradOutput, gradOutputRows|null, gradDtype, gradOut|null, async)
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
  Napi::TypedArray grad = grad_array(a, 12, p, gdt);

  const auto* row_scale = per_row ? static_cast<const float*>(data_of(row_go)) : nullptr;
  fusedce::BackwardArgs ba{p.batch(), static_cast<const float*>(data_of(lse)),
                           {data_of(grad), gdt, grad_scale(p.reduction, go, p.count), row_scale}};

  std::vector<Napi::Object> inputs{p.logits, p.targets, lse};
  if (per_row) inputs.push_back(row_go);
  auto grad_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(grad.As<Napi::Object>()));
  return run(
      a.env(), async, [ba] { fusedce::cross_entropy_backward(ba); },
      [grad_ref](Napi::Env) -> Napi::Value { return grad_ref->Value(); }, inputs);
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
  return o;
}

Napi::Value HardwareThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), fusedce::hardware_threads());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("crossEntropyForward", Napi::Function::New(env, Forward, "crossEntropyForward"));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, Backward, "crossEntropyBackward"));
  exports.Set("backend", Napi::Function::New(env, Backend, "backend"));
  exports.Set("expKernel", Napi::Function::New(env, ExpKernel, "expKernel"));
  exports.Set("readKernel", Napi::Function::New(env, ReadKernel, "readKernel"));
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures, "cpuFeatures"));
  exports.Set("hardwareThreads", Napi::Function::New(env, HardwareThreads, "hardwareThreads"));
  exports.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  return exports;
}

}  // namespace

NODE_API_MODULE(fusedce, Init)
