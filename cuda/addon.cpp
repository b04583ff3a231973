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
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fusedce_cuda.h"
#include "glue.h"

namespace {

using fusedce::glue::Call;
using fusedce::glue::Ranges;
using fusedce::glue::Request;
using fusedce::glue::throw_range;
using fusedce::glue::throw_type;
[[noreturn]] void throw_cuda(Napi::Env env, const std::string& what, const char* err) {
  throw Napi::Error::New(env, "fusedce (CUDA): " + what + ": " + err);
}

// The device that new buffers are allocated on (cuda.setDevice); calls run on their buffers' device.
int g_device = 0;

// A 64-bit handle (a stream, an address) from a bigint.
uint64_t read_handle(Napi::Env env, Napi::Value v, const std::string& name) {
  if (!v.IsBigInt()) throw_type(env, name + " must be a bigint (a cudaStream_t handle, e.g. torch's stream.cuda_stream)");
  bool lossless = false;
  const uint64_t h = v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw_range(env, name + " must be a 64-bit handle (0n for the default stream)");
  return h;
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
                        InstanceAccessor("address", &DeviceBuffer::Address, nullptr),
                        InstanceAccessor("device", &DeviceBuffer::DeviceIndex, nullptr)});
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
      if (fce_cuda_pointer_device(ptr_, &device_, err, sizeof err)) throw_cuda(env, "checking the pointer", err);
      owned_ = false;
      return;
    }
    device_ = g_device;
    if (fce_cuda_set_device(device_, err, sizeof err)) throw_cuda(env, "selecting device " + std::to_string(device_), err);
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
  int device() const { return device_; }
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
    // (napi_get_typedarray_info's pointer works for SharedArrayBuffer-backed arrays too)
    const fusedce::glue::Array a = fusedce::glue::array_info(env, info[0]);
    const double off = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0.0;
    if (!(off >= 0) || off + double(a.bytes) > double(bytes_))
      throw_range(env, std::string(fn) + ": " + std::to_string(a.bytes) + " bytes at offset " +
                           std::to_string(int64_t(off)) + " do not fit the " + std::to_string(bytes_) + "-byte device buffer");
    auto* host = static_cast<uint8_t*>(a.data);
    auto* dev = static_cast<uint8_t*>(ptr_) + size_t(off);
    char err[512] = "";
    const int rc = kind == 0 ? fce_cuda_memcpy(dev, host, a.bytes, 0, err, sizeof err)
                             : fce_cuda_memcpy(host, dev, a.bytes, 1, err, sizeof err);
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
  Napi::Value DeviceIndex(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), device_); }

  void* ptr_ = nullptr;
  int device_ = 0;
  size_t bytes_ = 0;
  bool owned_ = false;
};
Napi::FunctionReference* DeviceBuffer::ctor = nullptr;

double esize(int dt) { return dt == 0 ? 4.0 : 2.0; }

// The device buffers a call uses: marked busy (dispose() refuses) until the call settles, when
// the work's lambda that owns this is destroyed.
struct Busy {
  std::vector<DeviceBuffer*> bufs;
  ~Busy() {
    for (auto* b : bufs) b->busy--;
  }
};

std::string result_message(int rc, const char* fn, const char* err) {
  if (rc == FCE_OK) return "";
  return std::string(rc == FCE_EINVAL ? "" : "fusedce (CUDA): ") + fn + ": " + err;
}
void check_rc(int rc, const char* fn, const char* err) {
  if (rc != FCE_OK) throw fusedce::glue::Failure{rc == FCE_EINVAL, result_message(rc, fn, err)};
}

// What both ops read first (the request of cpp/glue.h, shared with the CPU glue): logits, dtype,
// rows, vocab, targets, ignoreIndex, reduction; every device buffer is checked for size, held
// (referenced and busy until the call settles), and its range enters the one overlap check.
#define CUDA_FIELDS "logits", "dtype", "rows", "vocab", "targets", "ignoreIndex", "reduction", "stream", "async"
// The device buffers one call uses: each checked for size, held (referenced and busy until the
// call settles), on one device (the first buffer's, which the call makes current), and entered
// into the one overlap check.
struct DeviceCall {
  Request r;
  Ranges ranges;
  Call call;
  std::shared_ptr<Busy> busy = std::make_shared<Busy>();
  int device = 0;

  DeviceCall(const Napi::CallbackInfo& info, const char* fn, std::initializer_list<const char*> fields)
      : r(info, fn, fields), call(info.Env(), r.fn()) {}
  DeviceBuffer* hold(const char* field, const char* name, double need, bool written, int* range = nullptr, int alias = -1) {
    Napi::Value v = r.value(field);
    DeviceBuffer* b = DeviceBuffer::From(r.env(), v, std::string(r.fn()) + ": " + name);
    if (double(b->bytes()) < need)
      throw_range(r.env(), std::string(r.fn()) + ": " + name + " holds " + std::to_string(b->bytes()) + " bytes, needs " +
                               std::to_string(int64_t(need)));
    if (busy->bufs.empty()) {
      device = b->device();
    } else if (b->device() != device) {
      throw_type(r.env(), std::string(r.fn()) + ": " + name + " is on CUDA device " + std::to_string(b->device()) +
                              " but logits are on device " + std::to_string(device) +
                              ". Keep a call's tensors on one device (cuda.setDevice before allocating them)");
    }
    const int k = ranges.add(b->ptr(), size_t(need), name, written, alias);
    if (range) *range = k;
    call.keep(v);
    busy->bufs.push_back(b);
    b->busy++;
    return b;
  }
  // stream: a cudaStream_t as a bigint (0n or absent: the default stream)
  void* stream() {
    return r.present("stream") ? reinterpret_cast<void*>(uintptr_t(read_handle(r.env(), r.value("stream"), std::string(r.fn()) + ": stream")))
                               : nullptr;
  }
};

// The cross-entropy calls: logits, dtype, rows, vocab, targets, ignoreIndex, reduction.
struct CudaCall : DeviceCall {
  fce_cuda_args c{};
  double n = 0;  // rows·vocab
  int logits_range = -1;

  CudaCall(const Napi::CallbackInfo& info, const char* fn, std::initializer_list<const char*> fields)
      : DeviceCall(info, fn, fields) {
    c.dtype = int(r.integer("dtype", 0, 2));
    c.rows = r.integer("rows", 0, 2147483647.0);
    c.vocab = r.integer("vocab", 1, 2147483647.0);
    n = double(c.rows) * double(c.vocab);
    c.logits = hold("logits", "logits", n * esize(c.dtype), false, &logits_range)->ptr();
    c.device = device;
    c.targets = static_cast<const int32_t*>(hold("targets", "targets", double(c.rows) * 4, false)->ptr());
    c.ignore_index = int32_t(r.integer("ignoreIndex", -2147483648.0, 2147483647.0));
    c.reduction = int(r.integer("reduction", 0, 2));
  }
  // The loss options (labelSmoothing, weight: a device vector (vocab,), zLoss, logitScale, softcap,
  // focalGamma): false when none is set (the plain kernels). The facade checks them first; this
  // re-checks what the kernels rely on.
  bool read_options() {
    const char* names[] = {"labelSmoothing", "weight", "zLoss", "logitScale", "softcap", "focalGamma"};
    bool any = false;
    for (const char* nm : names) any = any || r.present(nm);
    if (!any) return false;
    auto num = [&](const char* nm, double fallback, double lo, double hi) -> float {
      if (!r.present(nm)) return float(fallback);
      const double d = r.number(nm);
      if (!(d >= lo && d <= hi))
        throw_range(r.env(), std::string(r.fn()) + ": " + nm + " must be a finite number in [" + std::to_string(lo) + ", " +
                                 std::to_string(hi) + "], but got " + std::to_string(d));
      return float(d);
    };
    opt.label_smoothing = num("labelSmoothing", 0.0, 0.0, 1.0);
    opt.z_loss = num("zLoss", 0.0, 0.0, 1e30);
    opt.logit_scale = num("logitScale", 1.0, -1e30, 1e30);
    opt.softcap = num("softcap", 0.0, 0.0, 1e30);
    opt.focal_gamma = num("focalGamma", 0.0, 0.0, 1e6);
    if (opt.focal_gamma > 0.0f && (opt.label_smoothing != 0.0f || opt.z_loss != 0.0f))
      throw_type(r.env(), std::string(r.fn()) + ": focalGamma cannot be combined with labelSmoothing or zLoss (no agreed semantics)");
    if (r.present("weight")) opt.weight = static_cast<const float*>(hold("weight", "weight", double(c.vocab) * 4, false)->ptr());
    return true;
  }
  fce_cuda_ce_options opt{0.0f, nullptr, 0.0f, 1.0f, 0.0f, 0.0f};

  void read_stream() { c.stream = stream(); }

  // grad: a buffer of its own, or the logits themselves with the same dtype (in place).
  void* hold_grad(const char* field) {
    return hold(field, "grad", n * esize(c.grad_dtype), true, nullptr, c.grad_dtype == c.dtype ? logits_range : -1)->ptr();
  }
};

#define CUDA_OPTION_FIELDS "labelSmoothing", "weight", "zLoss", "logitScale", "softcap", "focalGamma"
#define CUDA_STATS_FIELDS "argmax", "entropy", "targetLogprob", "maxProb"

// crossEntropyForward({ fn, logits, dtype, rows, vocab, targets, ignoreIndex, reduction, losses,
//   lse, grad | null, gradDtype, gradOutput, labelSmoothing?, weight?: device (vocab,) f32, zLoss?,
//   logitScale?, softcap?, focalGamma?, argmax?, entropy?, targetLogprob?, maxProb?: device (rows,)
//   (the statistics: all four or none), gradOutputRows?: device (rows,) f32, losses64?: device (rows,)
//   f64 out, deviceLoss?, stream?, async }) (device buffers)
//   → { loss, lossSum, count, zLoss, weightSum }
// loss: mean = Σ ce / D + Σ zl / count (D = Σ weight[target], count without weights; 0 when it is 0).
Napi::Value Forward(const Napi::CallbackInfo& info) {
  CudaCall k(info, "crossEntropyForward",
             {CUDA_FIELDS, "losses", "lse", "grad", "gradDtype", "gradOutput", "gradOutputRows", "losses64", "deviceLoss",
              CUDA_OPTION_FIELDS, CUDA_STATS_FIELDS});
  Request& r = k.r;
  fce_cuda_args& c = k.c;
  c.losses = static_cast<float*>(k.hold("losses", "losses", double(c.rows) * 4, true)->ptr());
  c.lse = static_cast<float*>(k.hold("lse", "lse", double(c.rows) * 4, true)->ptr());
  c.grad_dtype = int(r.integer("gradDtype", 0, 2));
  if (r.present("grad")) c.grad = k.hold_grad("grad");
  c.grad_output = r.number("gradOutput");
  // gradOutputRows: device (rows,) per-row upstream (reduction none; 'sequenceMean' runs as none)
  if (r.present("gradOutputRows")) {
    if (c.reduction != 2) throw_type(r.env(), std::string(r.fn()) + ": a per-row gradOutput needs reduction 'none'");
    c.row_grad = static_cast<const float*>(k.hold("gradOutputRows", "gradOutput", double(c.rows) * 4, false)->ptr());
  }
  // losses64: device (rows,) f64 out, the rows' double losses (per-sequence sums)
  if (r.present("losses64")) c.losses64 = static_cast<double*>(k.hold("losses64", "losses64", double(c.rows) * 8, true)->ptr());
  fce_cuda_ce_stats st{nullptr, nullptr, nullptr, nullptr};
  const bool stats = r.present("argmax");
  if (stats) {
    const double rb = double(c.rows) * 4;
    st.argmax = static_cast<int32_t*>(k.hold("argmax", "stats.argmax", rb, true)->ptr());
    st.entropy = static_cast<float*>(k.hold("entropy", "stats.entropy", rb, true)->ptr());
    st.target_logprob = static_cast<float*>(k.hold("targetLogprob", "stats.targetLogprob", rb, true)->ptr());
    st.max_prob = static_cast<float*>(k.hold("maxProb", "stats.maxProb", rb, true)->ptr());
  }
  const bool with_opt = k.read_options() || stats;  // statistics run the options kernels
  k.read_stream();
  // deviceLoss: device (1,) f32 for the reduced loss; the call then does not wait (nothing is read back)
  if (r.present("deviceLoss")) c.device_loss = static_cast<float*>(k.hold("deviceLoss", "loss", 4, true)->ptr());
  const fce_cuda_ce_options opt = k.opt;
  const bool async = r.flag("async");
  k.ranges.check(r.env(), r.fn());
  auto out = std::make_shared<fce_cuda_opt_totals>();
  const int reduction = c.reduction;
  auto busy = k.busy;
  return k.call.run(
      async,
      [c, opt, st, stats, with_opt, out, busy] {
        char err[512] = "";
        if (with_opt)
          check_rc(fce_cuda_forward_opt(&c, &opt, stats ? &st : nullptr, out.get(), err, sizeof err), "crossEntropyForward", err);
        else {
          check_rc(fce_cuda_forward(&c, &out->ce_sum, &out->count, err, sizeof err), "crossEntropyForward", err);
          out->weight_sum = double(out->count);  // the plain mean divides by the counted rows
        }
      },
      [out, reduction](Napi::Object o) {
        const double count = double(out->count), D = out->weight_sum;
        const double ce = reduction == 0 ? (D != 0.0 ? out->ce_sum / D : 0.0) : out->ce_sum;
        const double zl = reduction == 0 ? (count > 0 ? out->z_sum / count : 0.0) : out->z_sum;
        o.Set("loss", ce + zl);
        o.Set("lossSum", out->ce_sum + out->z_sum);
        o.Set("count", count);
        o.Set("zLoss", zl);
        o.Set("weightSum", D);
      });
}

// crossEntropyBackward({ fn, logits, dtype, rows, vocab, targets, ignoreIndex, reduction, lse,
//   gradOutput, gradOutputRows | null, grad, gradDtype, the forward's options?, async }) (device
//   buffers) → { count }
Napi::Value Backward(const Napi::CallbackInfo& info) {
  CudaCall k(info, "crossEntropyBackward", {CUDA_FIELDS, "lse", "gradOutput", "gradOutputRows", "grad", "gradDtype", CUDA_OPTION_FIELDS});
  Request& r = k.r;
  fce_cuda_args& c = k.c;
  c.lse = static_cast<float*>(k.hold("lse", "lse", double(c.rows) * 4, false)->ptr());
  c.grad_output = r.number("gradOutput");
  if (r.present("gradOutputRows")) {
    if (c.reduction != 2) throw_type(r.env(), std::string(r.fn()) + ": a per-row gradOutput needs reduction 'none'");
    c.row_grad = static_cast<const float*>(k.hold("gradOutputRows", "gradOutput", double(c.rows) * 4, false)->ptr());
  }
  c.grad_dtype = int(r.integer("gradDtype", 0, 2));
  c.grad = k.hold_grad("grad");
  const bool with_opt = k.read_options();
  k.read_stream();
  const fce_cuda_ce_options opt = k.opt;
  const bool async = r.flag("async");
  k.ranges.check(r.env(), r.fn());
  auto out = std::make_shared<int64_t>(0);
  auto busy = k.busy;
  return k.call.run(
      async,
      [c, opt, with_opt, out, busy] {
        char err[512] = "";
        if (with_opt)
          check_rc(fce_cuda_backward_opt(&c, &opt, out.get(), err, sizeof err), "crossEntropyBackward", err);
        else
          check_rc(fce_cuda_backward(&c, out.get(), err, sizeof err), "crossEntropyBackward", err);
      },
      [out](Napi::Object o) { o.Set("count", double(*out)); });
}

// ---- soft targets, KL, entropy, JSD (cuda/soft_cross_entropy.cuh) ----

// The fields softForward and softBackward share: logits, dtype, rows, vocab, target | null (entropy),
// targetDtype (−1: f32 probabilities), kind (0 soft CE, 1 KL forward, 2 KL reverse, 3 entropy,
// 4 JSD), invTemperature, lossFactor, labelSmoothing?, weight?: device (vocab,), beta?, reduction,
// gradDtype, gradOutput, stream?, async.
#define SOFT_CUDA_FIELDS "logits", "dtype", "rows", "vocab", "target", "targetDtype", "kind", "invTemperature", "lossFactor", \
                         "labelSmoothing", "weight", "beta", "reduction", "grad", "gradDtype", "gradOutput", "stream", "async"
struct SoftCall : DeviceCall {
  fce_cuda_soft_args c{};
  double n = 0;
  int logits_range = -1;
  SoftCall(const Napi::CallbackInfo& info, const char* fn, std::initializer_list<const char*> fields) : DeviceCall(info, fn, fields) {
    c.dtype = int(r.integer("dtype", 0, 2));
    c.rows = r.integer("rows", 0, 2147483647.0);
    c.vocab = r.integer("vocab", 1, 2147483647.0);
    n = double(c.rows) * double(c.vocab);
    c.logits = hold("logits", "logits", n * esize(c.dtype), false, &logits_range)->ptr();
    c.device = device;
    c.kind = int(r.integer("kind", 0, 4));
    c.target_dtype = int(r.integer("targetDtype", -1, 2));
    if (c.kind != 3) c.target = hold("target", "target", n * (c.target_dtype < 0 ? 4.0 : esize(c.target_dtype)), false)->ptr();
    const double inv_t = r.number("invTemperature");
    if (!(inv_t > 0.0) || !std::isfinite(inv_t)) throw_range(r.env(), std::string(r.fn()) + ": temperature must be a finite number > 0");
    c.inv_temperature = float(inv_t);
    c.loss_factor = r.number_or("lossFactor", 1.0);
    c.label_smoothing = float(r.number_or("labelSmoothing", 0.0));
    if (!(c.label_smoothing >= 0.0f && c.label_smoothing <= 1.0f))
      throw_range(r.env(), std::string(r.fn()) + ": labelSmoothing must be a finite number in [0, 1]");
    if (r.present("weight")) c.weight = static_cast<const float*>(hold("weight", "weight", double(c.vocab) * 4, false)->ptr());
    c.beta = r.number_or("beta", 0.5);
    c.reduction = int(r.integer("reduction", 0, 2));
    c.grad_dtype = int(r.integer("gradDtype", 0, 2));
    c.grad_output = r.number_or("gradOutput", 1.0);
    c.stream = stream();
  }
  void hold_grad() {
    c.grad = hold("grad", "grad", n * esize(c.grad_dtype), true, nullptr, c.grad_dtype == c.dtype ? logits_range : -1)->ptr();
  }
};

// softForward({ …shared, losses, lse: device (rows,) }) → { loss, lossSum, count }
Napi::Value SoftForward(const Napi::CallbackInfo& info) {
  SoftCall k(info, "softCrossEntropyForward", {SOFT_CUDA_FIELDS, "losses", "lse"});
  Request& r = k.r;
  fce_cuda_soft_args& c = k.c;
  c.losses = static_cast<float*>(k.hold("losses", "losses", double(c.rows) * 4, true)->ptr());
  c.lse = static_cast<float*>(k.hold("lse", "lse", double(c.rows) * 4, true)->ptr());
  if (r.present("grad")) k.hold_grad();
  const bool async = r.flag("async");
  k.ranges.check(r.env(), r.fn());
  auto out = std::make_shared<std::pair<double, int64_t>>(0.0, 0);
  const int reduction = c.reduction;
  auto busy = k.busy;
  const std::string fn = r.fn();
  return k.call.run(
      async,
      [c, out, busy, fn] {
        char err[512] = "";
        check_rc(fce_cuda_soft_forward(&c, &out->first, &out->second, err, sizeof err), fn.c_str(), err);
      },
      [out, reduction](Napi::Object o) {
        const double count = double(out->second);
        o.Set("loss", reduction == 0 ? (count > 0 ? out->first / count : 0.0) : out->first);
        o.Set("lossSum", out->first);
        o.Set("count", count);
      });
}

// softBackward({ …shared, lse: device (rows,), gradOutputRows?: device (rows,), grad }) → { count }
Napi::Value SoftBackward(const Napi::CallbackInfo& info) {
  SoftCall k(info, "softCrossEntropyBackward", {SOFT_CUDA_FIELDS, "lse", "gradOutputRows"});
  Request& r = k.r;
  fce_cuda_soft_args& c = k.c;
  c.lse = static_cast<float*>(k.hold("lse", "lse", double(c.rows) * 4, false)->ptr());
  if (r.present("gradOutputRows")) {
    if (c.reduction != 2) throw_type(r.env(), std::string(r.fn()) + ": a per-row gradOutput needs reduction 'none'");
    c.row_grad = static_cast<const float*>(k.hold("gradOutputRows", "gradOutput", double(c.rows) * 4, false)->ptr());
  }
  k.hold_grad();
  const bool async = r.flag("async");
  k.ranges.check(r.env(), r.fn());
  auto out = std::make_shared<int64_t>(0);
  auto busy = k.busy;
  const std::string fn = r.fn();
  return k.call.run(
      async,
      [c, out, busy, fn] {
        char err[512] = "";
        check_rc(fce_cuda_soft_backward(&c, out.get(), err, sizeof err), fn.c_str(), err);
      },
      [out](Napi::Object o) { o.Set("count", double(*out)); });
}

// ---- binary cross-entropy (cuda/binary_cross_entropy.cuh) ----

// binaryCrossEntropy({ fn, logits, dtype, rows, vocab, targets: device (rows, vocab) f32, posWeight:
//   number | device (vocab,), weight?: device (rows·vocab) or (vocab,) with weightPerClass,
//   reduction, losses?: device (rows·vocab) (reduction none), grad?, gradDtype, gradOutput, stream?,
//   async }) → { loss, lossSum, count (elements) }
Napi::Value BinaryCrossEntropy(const Napi::CallbackInfo& info) {
  DeviceCall k(info, "binaryCrossEntropyWithLogits", {"logits", "dtype", "rows", "vocab", "targets", "posWeight", "weight", "weightPerClass",
                                                      "reduction", "losses", "grad", "gradDtype", "gradOutput", "stream", "async"});
  Request& r = k.r;
  fce_cuda_bce_args c{};
  c.dtype = int(r.integer("dtype", 0, 2));
  c.rows = r.integer("rows", 0, 2147483647.0);
  c.vocab = r.integer("vocab", 1, 2147483647.0);
  const double n = double(c.rows) * double(c.vocab);
  int zr = -1;
  c.logits = k.hold("logits", "logits", n * esize(c.dtype), false, &zr)->ptr();
  c.device = k.device;
  c.targets = static_cast<const float*>(k.hold("targets", "targets", n * 4, false)->ptr());
  c.pos_weight_scalar = 1.0f;
  if (r.value("posWeight").IsNumber()) {
    const double pw = r.number("posWeight");
    if (!(pw >= 0.0) || !std::isfinite(pw)) throw_range(r.env(), std::string(r.fn()) + ": posWeight must be a finite number ≥ 0");
    c.pos_weight_scalar = float(pw);
  } else if (r.present("posWeight")) {
    c.pos_weight = static_cast<const float*>(k.hold("posWeight", "posWeight", double(c.vocab) * 4, false)->ptr());
  }
  c.weight_per_class = r.flag("weightPerClass") ? 1 : 0;
  if (r.present("weight"))
    c.weight = static_cast<const float*>(k.hold("weight", "weight", (c.weight_per_class ? double(c.vocab) : n) * 4, false)->ptr());
  c.reduction = int(r.integer("reduction", 0, 2));
  if (r.present("losses")) c.losses = static_cast<float*>(k.hold("losses", "losses", n * 4, true)->ptr());
  c.grad_dtype = int(r.integer("gradDtype", 0, 2));
  if (r.present("grad")) c.grad = k.hold("grad", "grad", n * esize(c.grad_dtype), true, nullptr, c.grad_dtype == c.dtype ? zr : -1)->ptr();
  c.grad_output = r.number_or("gradOutput", 1.0);
  c.stream = k.stream();
  const bool async = r.flag("async");
  k.ranges.check(r.env(), r.fn());
  auto out = std::make_shared<double>(0.0);
  const int reduction = c.reduction;
  auto busy = k.busy;
  const std::string fn = r.fn();
  return k.call.run(
      async,
      [c, out, busy, fn] {
        char err[512] = "";
        check_rc(fce_cuda_bce_forward(&c, out.get(), err, sizeof err), fn.c_str(), err);
      },
      [out, reduction, n](Napi::Object o) {
        o.Set("loss", reduction == 0 ? (n > 0 ? *out / n : 0.0) : *out);
        o.Set("lossSum", *out);
        o.Set("count", n);
      });
}

// probe() → { ok, count, reason, driver }: whether a CUDA device can be used.
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  int n = 0;
  char err[512] = "";
  const int rc = fce_cuda_device_count(&n, err, sizeof err);
  o.Set("ok", rc == FCE_OK && n > 0);
  o.Set("count", n);
  // false only when there is no NVIDIA driver at all (the facade then stays quiet in 'auto')
  o.Set("driver", rc != FCE_ENODRIVER);
  o.Set("reason", rc ? std::string(err) : n == 0 ? std::string("no CUDA device found") : std::string());
  return o;
}

// The number of devices (0 when none answers).
int device_count() {
  int n = 0;
  char err[512] = "";
  return fce_cuda_device_count(&n, err, sizeof err) == FCE_OK ? n : 0;
}
int read_device(const Napi::CallbackInfo& info, const char* fn, size_t arg) {
  Napi::Env env = info.Env();
  if (info.Length() <= arg || info[arg].IsUndefined()) return g_device;
  if (!info[arg].IsNumber()) throw_type(env, std::string(fn) + ": device must be an integer");
  const double d = info[arg].As<Napi::Number>().DoubleValue();
  const int n = device_count();
  if (!(d >= 0 && d < n && d == double(int(d))))
    throw_range(env, std::string(fn) + ": device must be an integer in [0, " + std::to_string(n) + ") (the CUDA devices of this machine), but got " +
                         std::to_string(d));
  return int(d);
}

// deviceInfo(device = the current one)
Napi::Value DeviceInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  fce_cuda_device_info d;
  char err[512] = "";
  const int dev = read_device(info, "cuda.deviceInfo", 0);
  const int rc = fce_cuda_device_info_get(dev, &d, err, sizeof err);
  fce_cuda_set_device(g_device, nullptr, 0);  // deviceInfo made dev current
  if (rc) throw_cuda(env, "deviceInfo", err);
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", std::string(d.name));
  o.Set("multiprocessors", d.multiprocessors);
  o.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
  o.Set("totalMemory", double(d.total_memory));
  o.Set("freeMemory", double(d.free_memory));
  o.Set("l2Bytes", d.l2_bytes);
  o.Set("sharedMemoryPerBlock", d.shared_per_block_optin);
  o.Set("emulated", d.emulated != 0);
  o.Set("index", dev);
  return o;
}

Napi::Value DeviceCount(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), device_count()); }
Napi::Value GetDevice(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), g_device); }
// setDevice(device): where new device buffers are allocated
Napi::Value SetDevice(const Napi::CallbackInfo& info) {
  const int dev = read_device(info, "cuda.setDevice", 0);
  char err[512] = "";
  if (fce_cuda_set_device(dev, err, sizeof err)) throw_cuda(info.Env(), "setDevice", err);
  g_device = dev;
  return info.Env().Undefined();
}
// streamCreate(device = current) → bigint; streamDestroy(s); streamSynchronize(s) (0n: the default stream)
Napi::Value StreamCreate(const Napi::CallbackInfo& info) {
  const int dev = read_device(info, "cuda.createStream", 0);
  void* st = nullptr;
  char err[512] = "";
  const int rc = fce_cuda_stream_create(dev, &st, err, sizeof err);
  fce_cuda_set_device(g_device, nullptr, 0);
  if (rc) throw_cuda(info.Env(), "createStream", err);
  return Napi::BigInt::New(info.Env(), uint64_t(reinterpret_cast<uintptr_t>(st)));
}
Napi::Value StreamDestroy(const Napi::CallbackInfo& info) {
  const uint64_t h = read_handle(info.Env(), info[0], "cuda.destroyStream: stream");
  if (h == 0) throw_range(info.Env(), "cuda.destroyStream: stream must not be 0n (the default stream is not destroyed)");
  char err[512] = "";
  if (fce_cuda_stream_destroy(reinterpret_cast<void*>(uintptr_t(h)), err, sizeof err)) throw_cuda(info.Env(), "destroyStream", err);
  return info.Env().Undefined();
}
Napi::Value StreamSynchronize(const Napi::CallbackInfo& info) {
  const uint64_t h = info.Length() > 0 && !info[0].IsUndefined() ? read_handle(info.Env(), info[0], "cuda.synchronize: stream") : 0;
  char err[512] = "";
  fce_cuda_set_device(g_device, nullptr, 0);
  if (fce_cuda_stream_synchronize(reinterpret_cast<void*>(uintptr_t(h)), err, sizeof err)) throw_cuda(info.Env(), "synchronize", err);
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  fusedce::glue::init_env(env);
  Napi::Function buf = DeviceBuffer::Define(env);
  DeviceBuffer::ctor = new Napi::FunctionReference(Napi::Persistent(buf));
  exports.Set("DeviceBuffer", buf);
  exports.Set("crossEntropyForward", Napi::Function::New(env, Forward, "crossEntropyForward"));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, Backward, "crossEntropyBackward"));
  exports.Set("softForward", Napi::Function::New(env, SoftForward, "softForward"));
  exports.Set("softBackward", Napi::Function::New(env, SoftBackward, "softBackward"));
  exports.Set("binaryCrossEntropy", Napi::Function::New(env, BinaryCrossEntropy, "binaryCrossEntropy"));
  exports.Set("probe", Napi::Function::New(env, Probe, "probe"));
  exports.Set("deviceInfo", Napi::Function::New(env, DeviceInfo, "deviceInfo"));
  exports.Set("deviceCount", Napi::Function::New(env, DeviceCount, "deviceCount"));
  exports.Set("getDevice", Napi::Function::New(env, GetDevice, "getDevice"));
  exports.Set("setDevice", Napi::Function::New(env, SetDevice, "setDevice"));
  exports.Set("createStream", Napi::Function::New(env, StreamCreate, "createStream"));
  exports.Set("destroyStream", Napi::Function::New(env, StreamDestroy, "destroyStream"));
  exports.Set("synchronize", Napi::Function::New(env, StreamSynchronize, "synchronize"));
  exports.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  return exports;
}

}  // namespace

NODE_API_MODULE(fusedce_cuda, Init)
