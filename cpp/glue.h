// The native boundary shared by the CPU glue (cpp/addon.cpp) and the CUDA glue (cuda/addon.cpp):
// one request object per call, read once, validated as C++ values, and run sync or async.
//
// The rules this file enforces (README "Memory safety" says the same to users):
//   1. Read once. Request reads every field of the request object (getters and proxies run here,
//      and only here), then takes every typed array's pointer and length without running any JS.
//      Nothing after that touches a JS value until the result is written, so a getter cannot
//      detach, shrink or rewrite what was checked.
//   2. One overlap rule. Every memory range a call reads or writes goes into one Ranges list;
//      a written range may share no byte with any other range, except a gradient written over
//      the logits exactly (same address, same length, same dtype: element for element).
//   3. Memory that stays valid during async work. Small inputs (targets, lse, per-row
//      gradOutput, class weights, posWeight) are copied before the work is queued, so rewriting
//      them later changes nothing. The large ones (logits, soft targets, BCE targets and weights,
//      every output) stay in the caller's buffer, which the call "pins" first: a resizable
//      ArrayBuffer is refused (resize(0) decommits its pages), and the ArrayBuffer is marked
//      untransferable (Node's markAsUntransferable: a later transfer copies instead of
//      detaching). SharedArrayBuffers need neither: they can never be detached or shrunk.
//      References to every array keep the garbage collector off them until the call settles.
//   4. Teardown. A completion that arrives after its environment began to tear down (a Worker
//      terminated, the process exiting) does nothing: it neither resolves nor touches JS.
//   5. No abort. std::bad_alloc anywhere in a call (scratch, per-row vectors, the thread pool)
//      becomes a RangeError naming the call and the bytes; outputs are allocated by the facade
//      (in JS, where a failure is a RangeError too), never by V8 from here.
#pragma once

#include <napi.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace fusedce {
namespace glue {

[[noreturn]] inline void throw_type(Napi::Env env, const std::string& m) { throw Napi::TypeError::New(env, m); }
[[noreturn]] inline void throw_range(Napi::Env env, const std::string& m) { throw Napi::RangeError::New(env, m); }

inline const char* typed_array_name(napi_typedarray_type t) {
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

// ---- Per-environment state (one per main thread or Worker that loaded the addon) -------------
struct EnvState {
  std::atomic<bool> alive{true};  // false once the environment's cleanup hooks run
  Napi::FunctionReference pin;    // pin(arrayBuffer, name): refuse resizable, mark untransferable
  Napi::FunctionReference alloc;  // alloc(bytes) → a fresh ArrayBuffer, not zero-filled
};

inline EnvState* env_state(Napi::Env env) { return env.GetInstanceData<EnvState>(); }

// Called once from each glue's Init: instance data, and a cleanup hook that marks teardown.
inline void init_env(Napi::Env env) {
  if (env_state(env)) return;
  auto* s = new EnvState();
  env.SetInstanceData<EnvState>(s);  // deleted by N-API when the environment goes away
  napi_add_env_cleanup_hook(
      env, [](void* p) { static_cast<EnvState*>(p)->alive.store(false); }, s);
}

// setHooks(pin, alloc): the loader (ts/binding.ts) hands over its pin and alloc functions, once.
inline Napi::Value SetHooks(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction() || !info[1].IsFunction()) throw_type(info.Env(), "setHooks: pin and alloc must be functions");
  EnvState* s = env_state(info.Env());
  if (!s->pin.IsEmpty()) throw Napi::Error::New(info.Env(), "setHooks: the hooks are already set");
  s->pin = Napi::Persistent(info[0].As<Napi::Function>());
  s->alloc = Napi::Persistent(info[1].As<Napi::Function>());
  return info.Env().Undefined();
}

// ---- A typed array, read without running JS ---------------------------------------------------
struct Array {
  bool present = false;
  napi_typedarray_type type = napi_uint8_array;
  void* data = nullptr;
  size_t length = 0;       // elements
  size_t bytes = 0;
  napi_value value = nullptr;   // the typed array (kept referenced by async calls)
  napi_value buffer = nullptr;  // its ArrayBuffer or SharedArrayBuffer
  bool shared = false;          // a SharedArrayBuffer
  bool detached = false;
  bool fresh = false;           // allocated for this call (by fresh() below): nobody else holds it
};

inline size_t element_size(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: return 1;
    case napi_int16_array: case napi_uint16_array: return 2;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: return 4;
    default: return 8;
  }
}

// napi_get_typedarray_info gives the data pointer for any backing store; node-addon-api's
// TypedArray::ArrayBuffer() fails on a SharedArrayBuffer ("Invalid argument"), so it is not used.
inline Array array_info(Napi::Env env, napi_value v) {
  Array a;
  a.present = true;
  a.value = v;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, v, &a.type, &a.length, &a.data, &a.buffer, &offset) != napi_ok)
    throw Napi::Error::New(env, "fusedce: cannot read a typed array");
  a.bytes = a.length * element_size(a.type);
  bool is_ab = false;
  napi_is_arraybuffer(env, a.buffer, &is_ab);
  a.shared = !is_ab;
  if (is_ab) {
    bool det = false;
    napi_is_detached_arraybuffer(env, a.buffer, &det);
    a.detached = det;
  }
  return a;
}

// ---- The request ------------------------------------------------------------------------------
// Request r(info, "crossEntropyForward", {"logits", "dtype", …}) reads the field `fn` (the
// user-facing name the facade passes for messages; the given name when absent) and each named
// field of info[0] once (phase 1: the only place where user JS can run); the typed accessors
// below then only look at the values read (phase 2: no JS runs), and each message has the shape
// "<fn>: <name> must be …, but got …".
class Request {
 public:
  Request(const Napi::CallbackInfo& info, const char* fallback_fn, std::initializer_list<const char*> names)
      : env_(info.Env()), fn_(fallback_fn) {
    if (!info[0].IsObject()) throw_type(env_, fn_ + ": the request must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value name = o.Get("fn");  // phase 1
    if (name.IsString()) {
      std::string n = name.As<Napi::String>().Utf8Value();
      if (!n.empty() && n.size() < 64) fn_ = std::move(n);
    }
    for (const char* n : names) fields_.emplace_back(n, o.Get(n));
  }

  Napi::Env env() const { return env_; }
  const char* fn() const { return fn_.c_str(); }

  Napi::Value value(const char* name) const {
    for (const auto& f : fields_)
      if (std::strcmp(f.first, name) == 0) return f.second;
    throw Napi::Error::New(env_, std::string(fn_) + ": internal: field '" + name + "' was not read");
  }
  bool present(const char* name) const {
    Napi::Value v = value(name);
    return !v.IsUndefined() && !v.IsNull();
  }
  bool flag(const char* name) const {
    Napi::Value v = value(name);
    if (v.IsUndefined() || v.IsNull()) return false;
    if (!v.IsBoolean()) throw_type(env_, std::string(fn_) + ": " + name + " must be a boolean");
    return v.As<Napi::Boolean>().Value();
  }
  double number(const char* name) const {
    Napi::Value v = value(name);
    if (!v.IsNumber()) throw_type(env_, std::string(fn_) + ": " + name + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  }
  double number_or(const char* name, double fallback) const { return present(name) ? number(name) : fallback; }
  int64_t integer(const char* name, double lo, double hi) const {
    const double d = number(name);
    if (!(d == double(int64_t(d))) || d < lo || d > hi)
      throw_range(env_, std::string(fn_) + ": " + name + " must be an integer in [" + std::to_string(int64_t(lo)) + ", " +
                            std::to_string(int64_t(hi)) + "], but got " + std::to_string(d));
    return int64_t(d);
  }
  // A typed array of type `want` and `want_len` elements (want_len < 0: any length).
  Array array(const char* name, napi_typedarray_type want, double want_len, bool optional = false) const {
    Napi::Value v = value(name);
    if (optional && (v.IsUndefined() || v.IsNull())) return Array{};
    if (!v.IsTypedArray())
      throw_type(env_, std::string(fn_) + ": " + name + " must be a " + typed_array_name(want));
    Array a = array_info(env_, v);
    if (a.type != want)
      throw_type(env_, std::string(fn_) + ": " + name + " must be a " + typed_array_name(want) + ", but got " +
                           typed_array_name(a.type));
    if (a.detached)
      throw_type(env_, std::string(fn_) + ": " + name + " views a detached ArrayBuffer (it was transferred); pass an array "
                                                        "whose buffer is still attached");
    if (want_len >= 0 && double(a.length) != want_len)
      throw_range(env_, std::string(fn_) + ": " + name + " must have length " + std::to_string(int64_t(want_len)) +
                            ", but has length " + std::to_string(a.length));
    return a;
  }

 private:
  Napi::Env env_;
  std::string fn_;
  std::vector<std::pair<const char*, Napi::Value>> fields_;
};

// ---- One overlap rule ------------------------------------------------------------------------
struct Range {
  const void* p;
  size_t bytes;
  std::string name;
  bool written;
  int alias;  // a written range may coincide exactly with range number `alias` (−1: none)
};

class Ranges {
 public:
  // Each returns the range's number (−1 when the array is absent or empty), for write(…, alias).
  int read(const Array& a, const std::string& name) { return a.present ? add(a.data, a.bytes, name, false, -1) : -1; }
  int write(const Array& a, const std::string& name, int alias = -1) {
    return a.present ? add(a.data, a.bytes, name, true, alias) : -1;
  }
  int add(const void* p, size_t bytes, const std::string& name, bool written, int alias) {
    if (!p || !bytes) return -1;
    v_.push_back({p, bytes, name, written, alias});
    return int(v_.size()) - 1;
  }
  // Every pair with a written range: disjoint, or (the in-place gradient) exactly its alias.
  void check(Napi::Env env, const char* fn) const {
    for (size_t i = 0; i < v_.size(); ++i)
      for (size_t j = i + 1; j < v_.size(); ++j) {
        const Range& x = v_[i];
        const Range& y = v_[j];
        if (!x.written && !y.written) continue;
        const auto* xp = static_cast<const uint8_t*>(x.p);
        const auto* yp = static_cast<const uint8_t*>(y.p);
        if (!(xp < yp + y.bytes && yp < xp + x.bytes)) continue;
        const bool x_w = x.written && (!y.written || x.alias >= 0);
        const Range& w = x_w ? x : y;
        const Range& o = x_w ? y : x;
        const int o_index = int(x_w ? j : i);
        if (w.alias == o_index && w.p == o.p && w.bytes == o.bytes) continue;
        if (w.alias == o_index || o.name == "logits.data")
          throw_range(env, std::string(fn) + ": " + w.name + " overlaps " + o.name +
                               " without being exactly it (with the same dtype); use inPlace: true to write the gradient "
                               "over the logits");
        if (!o.written)
          throw_range(env, std::string(fn) + ": " + w.name + " overlaps another input (" + o.name +
                               "); give it its own buffer");
        throw_range(env, std::string(fn) + ": " + w.name + " overlaps " + o.name + "; give every output its own memory");
      }
  }

 private:
  std::vector<Range> v_;
};

// A copy of a small input taken on the JS thread: the kernel reads the copy, so rewriting the
// caller's array while an async call runs cannot change what was validated.
template <typename T>
std::vector<T> copy_of(const Array& a) {
  if (!a.present) return {};
  const T* p = static_cast<const T*>(a.data);
  return std::vector<T>(p, p + a.length);
}

// madvise(MADV_HUGEPAGE) over a fresh output's 2 MiB-aligned interior before the kernel touches
// it: its first writes then fault in 2 MiB pages, not 4 KiB ones. Advisory; a no-op elsewhere.
inline void advise_huge(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

// ---- Fresh outputs --------------------------------------------------------------------------
// Outputs are allocated by the loader's alloc hook (ts/binding.ts: Buffer.allocUnsafeSlow, so
// the memory is not zero-filled: every element is written by the kernel), called from here. A
// failure there is a JS RangeError, rethrown naming the call and the bytes; V8's own allocation
// from native code would abort the process instead. No user code runs in the hook.
inline Array fresh(Napi::Env env, const char* fn, napi_typedarray_type type, size_t length, const char* what) {
  EnvState* s = env_state(env);
  if (!s || s->alloc.IsEmpty())
    throw Napi::Error::New(env, std::string(fn) + ": the native binding was loaded without its allocator; load fusedce "
                                                  "through its package entry point, not the .node file");
  const size_t bytes = length * element_size(type);
  Napi::Value ab;
  try {
    ab = s->alloc.Call({Napi::Number::New(env, double(bytes))});
  } catch (const Napi::Error&) {
    throw_range(env, std::string(fn) + ": cannot allocate " + std::to_string(bytes) + " bytes for " + what +
                         "; use smaller batches, or pass `out` to reuse a buffer");
  }
  if (!ab.IsArrayBuffer()) throw Napi::Error::New(env, std::string(fn) + ": the allocator did not return an ArrayBuffer");
  napi_value ta;
  if (napi_create_typedarray(env, type, length, ab, 0, &ta) != napi_ok)
    throw_range(env, std::string(fn) + ": cannot create a typed array of " + std::to_string(length) + " elements for " + what);
  Array a = array_info(env, ta);
  a.fresh = true;
  if (bytes >= (size_t(4) << 20)) advise_huge(a.data, a.bytes);
  if (bytes >= (size_t(128) << 10)) {
    // After a large output, a 4 KiB ArrayBuffer from the same allocator, dropped at once.
    // Measured (bench/boundary.bench.mjs, page faults from /proc/self/stat): without it a fresh
    // backward gradient (16 MB) took 563 page faults a call and 0.38–0.47× the time of a reused
    // out; with it, 2–3 faults and 0.89–0.95×. Keeping such buffers alive changes nothing, and a
    // plain malloc of the same size from here does not do it. Why the allocation helps (glibc
    // reusing the freed outputs' pages instead of trimming them, V8's sweeping of young array
    // buffers, or both) we have not established. It is only a hint: if it fails, nothing else does.
    try {
      s->alloc.Call({Napi::Number::New(env, 4096.0)});
    } catch (const Napi::Error&) {
    }
  }
  return a;
}

// ---- Running a call --------------------------------------------------------------------------
// A failure raised by work: RangeError (bad argument found while running) or Error. Work may
// also throw std::bad_alloc: it becomes a RangeError naming the call's scratch estimate.
struct Failure {
  bool range;
  std::string message;
};

// The result object: the named arrays given to result() and whatever finish() sets.
using Finish = std::function<void(Napi::Object)>;

class Call {
 public:
  Call(Napi::Env env, const char* fn) : env_(env), fn_(fn) {}
  // Keeps a JS value referenced until an async call settles.
  void keep(napi_value v) {
    if (v) values_.push_back(v);
  }
  // The caller's arrays an async call uses in place: pinned (rule 3) and kept. Fresh outputs
  // need no pin: nobody else holds them until the call settles.
  void pin(const Array& a, const char* name) {
    if (!a.present) return;
    keep(a.value);
    if (!a.shared && !a.fresh && a.bytes > 0) pinned_.emplace_back(a.buffer, name);
  }
  // An array the result object carries under `name` (kept until then).
  void result(const char* name, const Array& a) {
    if (a.present) results_.emplace_back(name, a.value);
  }
  void scratch(double bytes) { scratch_ += bytes; }

  // Runs work now (sync) or on the libuv pool (async, returning a Promise of the result object).
  Napi::Value run(bool async, std::function<void()> work, Finish finish);

 private:
  std::string oom() const {
    return std::string(fn_) + ": out of memory: the call needs about " + std::to_string(uint64_t(scratch_)) +
           " bytes of scratch memory beyond its arrays; use smaller batches or fewer threads";
  }
  Napi::Env env_;
  const char* fn_;
  std::vector<napi_value> values_;
  std::vector<std::pair<napi_value, const char*>> pinned_;
  std::vector<std::pair<const char*, napi_value>> results_;
  double scratch_ = 0;
};

class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, const char* fn, std::function<void()> work, Finish finish, const std::vector<napi_value>& keep,
      const std::vector<std::pair<const char*, napi_value>>& results, std::string oom)
      : Napi::AsyncWorker(env, fn), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        finish_(std::move(finish)), oom_(std::move(oom)) {
    for (napi_value v : keep) refs_.push_back(Napi::Persistent(Napi::Value(env, v)));
    for (const auto& r : results) results_.emplace_back(r.first, Napi::Persistent(Napi::Value(env, r.second)));
  }
  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      work_();
    } catch (const Failure& f) {
      failure_ = f;
      failed_ = true;
    } catch (const std::bad_alloc&) {
      failure_ = {true, oom_};
      failed_ = true;
    } catch (const std::exception& e) {
      failure_ = {false, std::string("fusedce: ") + e.what()};
      failed_ = true;
    }
  }

  // Replaces AsyncWorker's completion: after teardown began it settles nothing and touches no
  // JS (rule 4), and no exception leaves it (one escaping here would terminate the process).
  // Either way the job is deleted (AsyncWorker's own completion would have done it too).
  void OnWorkComplete(Napi::Env env, napi_status) override {
    EnvState* s = env_state(env);
    if (s && s->alive.load() && can_run_js(env)) settle(env);
    Destroy();
  }

  // A Worker's teardown runs the completions of pending work before its cleanup hooks (so
  // `alive` is still true), but JS can no longer run: every N-API call that could run JS then
  // fails with napi_pending_exception. Probe with one that runs none (a property read on a fresh
  // plain object).
  static bool can_run_js(Napi::Env env) {
    napi_value o, v;
    if (napi_create_object(env, &o) != napi_ok) return false;
    return napi_get_named_property(env, o, "x", &v) == napi_ok;
  }

 private:
  void settle(Napi::Env env) {
    try {
      Napi::HandleScope scope(env);
      if (failed_) {
        Napi::Error e = failure_.range ? Napi::Error(Napi::RangeError::New(env, failure_.message))
                                       : Napi::Error::New(env, failure_.message);
        deferred_.Reject(e.Value());
        return;
      }
      Napi::Object o = Napi::Object::New(env);
      for (auto& r : results_) o.Set(r.first, r.second.Value());
      finish_(o);
      deferred_.Resolve(o);
    } catch (const Napi::Error& e) {
      try {
        deferred_.Reject(e.Value());
      } catch (...) {
      }
    } catch (...) {
    }
  }

  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  Finish finish_;
  std::string oom_;
  std::vector<Napi::Reference<Napi::Value>> refs_;
  std::vector<std::pair<const char*, Napi::Reference<Napi::Value>>> results_;
  Failure failure_{false, ""};
  bool failed_ = false;
};

inline Napi::Value Call::run(bool async, std::function<void()> work, Finish finish) {
  if (!async) {
    try {
      work();
    } catch (const Failure& f) {
      if (f.range) throw_range(env_, f.message);
      throw Napi::Error::New(env_, f.message);
    } catch (const std::bad_alloc&) {
      throw_range(env_, oom());
    }
    Napi::Object o = Napi::Object::New(env_);
    for (const auto& r : results_) o.Set(r.first, Napi::Value(env_, r.second));
    finish(o);
    return o;
  }
  EnvState* s = env_state(env_);
  if (!pinned_.empty()) {
    if (!s || s->pin.IsEmpty())
      throw Napi::Error::New(env_, std::string(fn_) + ": async calls need the loader's pin function (load fusedce through "
                                                      "its package entry point, not the .node file)");
    // pin throws a TypeError for a resizable ArrayBuffer; the message names the argument.
    for (const auto& p : pinned_)
      s->pin.Call({Napi::Value(env_, p.first), Napi::String::New(env_, std::string(fn_) + ": " + p.second)});
  }
  Job* job;
  try {
    job = new Job(env_, fn_, std::move(work), std::move(finish), values_, results_, oom());
  } catch (const std::bad_alloc&) {
    throw_range(env_, oom());
  }
  Napi::Promise pr = job->promise();
  job->Queue();
  return pr;
}

}  // namespace glue
}  // namespace fusedce
