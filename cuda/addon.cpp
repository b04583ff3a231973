// N-API glue of the CUDA variant (fusedce_cuda.node): device buffers and the two ops, over the
// plain C API of fusedce_cuda.h. Compiled by the host C++ compiler (no CUDA headers here), and
// linked either with the nvcc-built kernels (CMakeLists.txt) or with the same kernel source built
// over the CPU emulation layer (binding.gyp's fusedce_cuda_emu, for CI).
//
// The TypeScript facade (ts/cuda.ts) validates arguments and gives the user-facing messages; this
// file re-checks what a kernel relies on (buffer sizes, disposed buffers, dtypes) so that no call
// through the raw binding reaches a kernel with invalid state.
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fusedce_cuda.h"

namespace {

[[noreturn]] void throw_type(Napi::Env env, const std::string& m) { throw Napi::TypeError::New(env, m); }
[[noreturn]] void throw_range(Napi::Env env, const std::string& m) { throw Napi::RangeError::New(env, m); }
[[noreturn]] void throw_cuda(Napi::Env env, const std::string& what, const char* err) {
  throw Napi::Error::New(env, "fusedce (CUDA): " + what + ": " + err);
}

// Device memory owned by a JS object (or borrowed, from fromPointer). Freed by dispose(), or by
// the finalizer when the object is collected; the GC is told about the bytes it holds.
class DeviceBuffer : public Napi::ObjectWrap<DeviceBuffer> {
 public:
  static Napi::FunctionReference* ctor;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "DeviceBuffer",
                       {InstanceMethod("dispose", &DeviceBuffer::Dispose),
                        InstanceMethod("upload", &DeviceBuffer::Upload),
                        InstanceMethod("download", &DeviceBuffer::Download),
                        InstanceMethod("copyFrom", &DeviceBuffer::CopyFrom),
                        InstanceAccessor("bytes", &DeviceBuffer::Bytes, nullptr),
                        InstanceAccessor("disposed", &DeviceBuffer::Disposed, nullptr),
                        InstanceAccessor("owned", &DeviceBuffer::Owned, nullptr),
                        InstanceAccessor("address", &DeviceBuffer::Address, nullptr)});
  }

  // new DeviceBuffer(bytes) allocates; new DeviceBuffer(bytes, address: bigint) borrows.
  explicit DeviceBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceBuffer>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) throw_type(env, "DeviceBuffer: bytes must be a number");
    const double b = info[0].As<Napi::Number>().DoubleValue();
    if (!(b >= 0) || b != double(uint64_t(b)) || b > 9007199254740991.0)
      throw_range(env, "DeviceBuffer: bytes must be a non-negative integer");
    bytes_ = size_t(b);
    char err[512] = "";
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsBigInt()) throw_type(env, "DeviceBuffer: address must be a bigint");
      bool lossless = false;
      const uint64_t addr = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
      if (!lossless || addr == 0) throw_range(env, "DeviceBuffer: address must be a non-zero 64-bit pointer");
      ptr_ = reinterpret_cast<void*>(uintptr_t(addr));
      int yes = 0;
      if (fce_cuda_is_device_pointer(ptr_, &yes, err, sizeof err)) throw_cuda(env, "checking the pointer", err);
      if (!yes)
        throw_range(env, "cuda.fromPointer: ptr is not device memory of the current CUDA device (pass a pointer from "
                         "cudaMalloc or a framework's device tensor)");
      owned_ = false;
      return;
    }
    if (fce_cuda_malloc(&ptr_, bytes_, err, sizeof err))
      throw Napi::Error::New(env, "fusedce (CUDA): cannot allocate " + std::to_string(bytes_) +
                                      " bytes of device memory: " + err +
                                      ". Free device tensors you no longer need (tensor.dispose()), or use smaller batches");
    owned_ = true;
    Napi::MemoryManagement::AdjustExternalMemory(env, int64_t(bytes_));
  }

  // The finalizer fallback: a buffer collected without dispose() frees its memory here.
  ~DeviceBuffer() override {
    if (ptr_ && owned_) {
      fce_cuda_free(ptr_, nullptr, 0);
      Napi::MemoryManagement::AdjustExternalMemory(Env(), -int64_t(bytes_));
    }
  }

  static DeviceBuffer* From(Napi::Env env, Napi::Value v, const std::string& name) {
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor->Value()))
      throw_type(env, name + " must be a device buffer");
    DeviceBuffer* b = Napi::ObjectWrap<DeviceBuffer>::Unwrap(v.As<Napi::Object>());
    if (!b->ptr_) throw Napi::Error::New(env, name + ": the device tensor has been disposed");
    return b;
  }

  void* ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  std::atomic<int> busy{0};  // async calls using it

 private:
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (busy.load() > 0)
      throw Napi::Error::New(info.Env(), "dispose: the device tensor is in use by a pending async call; await it first");
    if (ptr_ && owned_) {
      char err[512] = "";
      const int rc = fce_cuda_free(ptr_, err, sizeof err);
      Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -int64_t(bytes_));
      ptr_ = nullptr;
      if (rc) throw_cuda(info.Env(), "freeing device memory", err);
    }
    ptr_ = nullptr;
    return info.Env().Undefined();
  }
  // upload(src: TypedArray, byteOffset = 0): host → device
  Napi::Value Upload(const Napi::CallbackInfo& info) { return Copy(info, 0); }
  // download(dst: TypedArray, byteOffset = 0): device → host
  Napi::Value Download(const Napi::CallbackInfo& info) { return Copy(info, 1); }
  Napi::Value Copy(const Napi::CallbackInfo& info, int kind) {
    Napi::Env env = info.Env();
    const char* fn = kind == 0 ? "upload" : "download";
    if (!ptr_) throw Napi::Error::New(env, std::string(fn) + ": the device tensor has been disposed");
    if (!info[0].IsTypedArray()) throw_type(env, std::string(fn) + ": data must be a typed array");
    auto a = info[0].As<Napi::TypedArray>();
    const double off = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0.0;
    if (!(off >= 0) || off + double(a.ByteLength()) > double(bytes_))
      throw_range(env, std::string(fn) + ": " + std::to_string(a.ByteLength()) + " bytes at offset " +
                           std::to_string(int64_t(off)) + " do not fit the " + std::to_string(bytes_) + "-byte device buffer");
    auto* host = static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
    auto* dev = static_cast<uint8_t*>(ptr_) + size_t(off);
    char err[512] = "";
    const int rc = kind == 0 ? fce_cuda_memcpy(dev, host, a.ByteLength(), 0, err, sizeof err)
                             : fce_cuda_memcpy(host, dev, a.ByteLength(), 1, err, sizeof err);
    if (rc) throw_cuda(env, fn, err);
    return info[0];
  }
  // copyFrom(src: DeviceBuffer): device → device, the whole of src (it must fit)
  Napi::Value CopyFrom(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ptr_) throw Napi::Error::New(env, "copyFrom: the device tensor has been disposed");
    DeviceBuffer* src = From(env, info[0], "copyFrom: src");
    if (src->bytes_ > bytes_) throw_range(env, "copyFrom: src is larger than this buffer");
    char err[512] = "";
    if (fce_cuda_memcpy(ptr_, src->ptr_, src->bytes_, 2, err, sizeof err)) throw_cuda(env, "copyFrom", err);
    return env.Undefined();
  }
  Napi::Value Bytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(bytes_)); }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), ptr_ == nullptr); }
  Napi::Value Owned(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), owned_); }
  Napi::Value Address(const Napi::CallbackInfo& info) {
    return Napi::BigInt::New(info.Env(), uint64_t(reinterpret_cast<uintptr_t>(ptr_)));
  }

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  bool owned_ = false;
};
Napi::FunctionReference* DeviceBuffer::ctor = nullptr;

struct Args {
  const Napi::CallbackInfo& info;
  const char* fn;
  Napi::Env env() const { return info.Env(); }
  double number(size_t i, const char* name) const {
    if (!info[i].IsNumber()) throw_type(env(), std::string(fn) + ": " + name + " must be a number");
    return info[i].As<Napi::Number>().DoubleValue();
  }
  int64_t integer(size_t i, const char* name, double lo, double hi) const {
    const double d = number(i, name);
    if (!(d == double(int64_t(d))) || d < lo || d > hi)
      throw_range(env(), std::string(fn) + ": " + name + " must be an integer in [" + std::to_string(int64_t(lo)) + ", " +
                             std::to_string(int64_t(hi)) + "]");
    return int64_t(d);
  }
  bool present(size_t i) const { return !info[i].IsUndefined() && !info[i].IsNull(); }
  // A device buffer holding at least `need` bytes.
  DeviceBuffer* buffer(size_t i, const char* name, double need) const {
    DeviceBuffer* b = DeviceBuffer::From(env(), info[i], std::string(fn) + ": " + name);
    if (double(b->bytes()) < need)
      throw_range(env(), std::string(fn) + ": " + name + " holds " + std::to_string(b->bytes()) + " bytes, needs " +
                             std::to_string(int64_t(need)));
    return b;
  }
};

double esize(int dt) { return dt == 0 ? 4.0 : 2.0; }

// Runs `work` now, or on the libuv pool with a Promise; buffers in use are marked busy and kept
// referenced until it settles.
class Worker : public Napi::AsyncWorker {
 public:
  Worker(Napi::Env env, std::function<std::string()> work, std::function<Napi::Value(Napi::Env)> done,
         std::vector<std::pair<Napi::Object, DeviceBuffer*>> held)
      : Napi::AsyncWorker(env, "fusedce-cuda"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)) {
    for (auto& h : held) {
      refs_.push_back(Napi::Persistent(h.first));
      bufs_.push_back(h.second);
      h.second->busy++;
    }
  }
  ~Worker() override {
    for (auto* b : bufs_) b->busy--;
  }
  Napi::Promise promise() const { return deferred_.Promise(); }
  void Execute() override {
    error_ = work_();
    if (!error_.empty()) SetError(error_);
  }
  void OnOK() override { deferred_.Resolve(done_(Env())); }
  void OnError(const Napi::Error&) override {
    const bool range = error_.rfind("RANGE:", 0) == 0;
    const std::string msg = range ? error_.substr(6) : error_;
    deferred_.Reject(range ? Napi::RangeError::New(Env(), msg).Value() : Napi::Error::New(Env(), msg).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<std::string()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::vector<Napi::ObjectReference> refs_;
  std::vector<DeviceBuffer*> bufs_;
  std::string error_;
};

// work returns "" on success, "RANGE:<message>" for a bad argument found on the device, or a message.
Napi::Value run(Napi::Env env, bool async, std::function<std::string()> work, std::function<Napi::Value(Napi::Env)> done,
                std::vector<std::pair<Napi::Object, DeviceBuffer*>> held) {
  if (!async) {
    const std::string e = work();
    if (e.rfind("RANGE:", 0) == 0) throw_range(env, e.substr(6));
    if (!e.empty()) throw Napi::Error::New(env, e);
    return done(env);
  }
  auto* w = new Worker(env, std::move(work), std::move(done), std::move(held));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

std::string result_message(int rc, const char* fn, const char* err) {
  if (rc == FCE_OK) return "";
  if (rc == FCE_EINVAL) return std::string("RANGE:") + fn + ": " + err;
  return std::string("fusedce (CUDA): ") + fn + ": " + err;
}

// What both ops read first: (logits, dtype, rows, vocab, targets, ignoreIndex, reduction) at 0–6,
// and the device buffers the call holds (kept referenced, and busy, until the work is done).
struct Call {
  Args a;
  fce_cuda_args c{};
  double n = 0;  // rows·vocab
  std::vector<std::pair<Napi::Object, DeviceBuffer*>> held;

  Call(const Napi::CallbackInfo& info, const char* fn) : a{info, fn} {
    c.dtype = int(a.integer(1, "dtype", 0, 2));
    c.rows = a.integer(2, "rows", 0, 2147483647.0);
    c.vocab = a.integer(3, "vocab", 1, 2147483647.0);
    n = double(c.rows) * double(c.vocab);
    c.logits = hold(0, "logits", n * esize(c.dtype))->ptr();
    c.targets = static_cast<const int32_t*>(hold(4, "targets", double(c.rows) * 4)->ptr());
    c.ignore_index = int32_t(a.integer(5, "ignoreIndex", -2147483648.0, 2147483647.0));
    c.reduction = int(a.integer(6, "reduction", 0, 2));
  }
  DeviceBuffer* hold(size_t i, const char* name, double need) {
    DeviceBuffer* b = a.buffer(i, name, need);
    held.emplace_back(a.info[i].As<Napi::Object>(), b);
    return b;
  }
  // c.grad: a buffer of its own, or the logits themselves with the same dtype (in place).
  void check_grad() const {
    if (c.grad != c.logits) {
      const auto* lo = static_cast<const uint8_t*>(c.logits);
      const auto* go = static_cast<const uint8_t*>(c.grad);
      if (lo < go + size_t(n * esize(c.grad_dtype)) && go < lo + size_t(n * esize(c.dtype)))
        throw_range(a.env(), std::string(a.fn) + ": grad overlaps logits without being exactly it");
    } else if (c.grad_dtype != c.dtype) {
      throw_range(a.env(), std::string(a.fn) + ": an in-place gradient needs gradDtype equal to the logits' dtype");
    }
  }
};

// crossEntropyForward(logits, dtype, rows, vocab, targets, ignoreIndex, reduction, losses, lse,
//                     grad|null, gradDtype, gradOutput, async) → { lossSum, count }
Napi::Value Forward(const Napi::CallbackInfo& info) {
  Call k(info, "crossEntropyForward");
  Args& a = k.a;
  fce_cuda_args& c = k.c;
  c.losses = static_cast<float*>(k.hold(7, "losses", double(c.rows) * 4)->ptr());
  c.lse = static_cast<float*>(k.hold(8, "lse", double(c.rows) * 4)->ptr());
  c.grad_dtype = int(a.integer(10, "gradDtype", 0, 2));
  if (a.present(9)) {
    c.grad = k.hold(9, "grad", k.n * esize(c.grad_dtype))->ptr();
    k.check_grad();
  }
  c.grad_output = a.number(11, "gradOutput");
  const bool async = info[12].ToBoolean().Value();
  auto out = std::make_shared<std::pair<double, int64_t>>(0.0, 0);
  return run(
      a.env(), async,
      [c, out] {
        char err[512] = "";
        return result_message(fce_cuda_forward(&c, &out->first, &out->second, err, sizeof err), "crossEntropyForward", err);
      },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("lossSum", out->first);
        r.Set("count", double(out->second));
        return r;
      },
      k.held);
}

// crossEntropyBackward(logits, dtype, rows, vocab, targets, ignoreIndex, reduction, lse, gradOutput,
//                      rowGrad|null, grad, gradDtype, async) → count
Napi::Value Backward(const Napi::CallbackInfo& info) {
  Call k(info, "crossEntropyBackward");
  Args& a = k.a;
  fce_cuda_args& c = k.c;
  c.lse = static_cast<float*>(k.hold(7, "lse", double(c.rows) * 4)->ptr());
  c.grad_output = a.number(8, "gradOutput");
  if (a.present(9)) {
    if (c.reduction != 2) throw_type(a.env(), "crossEntropyBackward: a per-row gradOutput needs reduction 'none'");
    c.row_grad = static_cast<const float*>(k.hold(9, "gradOutput", double(c.rows) * 4)->ptr());
  }
  c.grad_dtype = int(a.integer(11, "gradDtype", 0, 2));
  c.grad = k.hold(10, "grad", k.n * esize(c.grad_dtype))->ptr();
  k.check_grad();
  const bool async = info[12].ToBoolean().Value();
  auto out = std::make_shared<int64_t>(0);
  return run(
      a.env(), async,
      [c, out] {
        char err[512] = "";
        return result_message(fce_cuda_backward(&c, out.get(), err, sizeof err), "crossEntropyBackward", err);
      },
      [out](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, double(*out)); }, k.held);
}

// probe() → { ok, count, reason }: whether a CUDA device can be used.
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  int n = 0;
  char err[512] = "";
  const int rc = fce_cuda_device_count(&n, err, sizeof err);
  o.Set("ok", rc == FCE_OK && n > 0);
  o.Set("count", n);
  o.Set("reason", rc ? std::string(err) : n == 0 ? std::string("no CUDA device found") : std::string());
  return o;
}

Napi::Value DeviceInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  fce_cuda_device_info d;
  char err[512] = "";
  if (fce_cuda_device_info_get(0, &d, err, sizeof err)) throw_cuda(env, "deviceInfo", err);
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", std::string(d.name));
  o.Set("multiprocessors", d.multiprocessors);
  o.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
  o.Set("totalMemory", double(d.total_memory));
  o.Set("freeMemory", double(d.free_memory));
  o.Set("l2Bytes", d.l2_bytes);
  o.Set("sharedMemoryPerBlock", d.shared_per_block_optin);
  o.Set("emulated", d.emulated != 0);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function buf = DeviceBuffer::Define(env);
  DeviceBuffer::ctor = new Napi::FunctionReference(Napi::Persistent(buf));
  exports.Set("DeviceBuffer", buf);
  exports.Set("crossEntropyForward", Napi::Function::New(env, Forward, "crossEntropyForward"));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, Backward, "crossEntropyBackward"));
  exports.Set("probe", Napi::Function::New(env, Probe, "probe"));
  exports.Set("deviceInfo", Napi::Function::New(env, DeviceInfo, "deviceInfo"));
  exports.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  return exports;
}

}  // namespace

NODE_API_MODULE(fusedce_cuda, Init)
