#include "tensor.h"

#include <algorithm>
#include <atomic>

#include <cstring>

#include "addon.h"
#include "args.h"

namespace usam {

namespace {
std::string ShapeString(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}
}  // namespace

Napi::Function TensorWrap::Define(Napi::Env env) {
  return DefineClass(env, "Tensor",
                     {
                         StaticMethod("fromArray", &GuardFn<&TensorWrap::FromArray>),
                         StaticMethod("zeros", &GuardFn<&TensorWrap::Zeros>),
                         StaticMethod("beginScope", &GuardFn<&TensorWrap::BeginScope>),
                         StaticMethod("endScope", &GuardFn<&TensorWrap::EndScope>),
                         StaticMethod("persistent", &GuardFn<&TensorWrap::Persistent>),
                         InstanceMethod("toArray", &TensorWrap::Guard<&TensorWrap::ToArray>),
                         InstanceAccessor("shape", &TensorWrap::Guard<&TensorWrap::Shape>, nullptr),
                         InstanceAccessor("dtype", &TensorWrap::Guard<&TensorWrap::DType>, nullptr),
                         InstanceAccessor("device", &TensorWrap::Guard<&TensorWrap::Device>, nullptr),
                         InstanceAccessor("numel", &TensorWrap::Guard<&TensorWrap::Numel>, nullptr),
                         InstanceAccessor("disposed", &TensorWrap::Guard<&TensorWrap::Disposed>, nullptr),
                         InstanceMethod("dispose", &TensorWrap::Guard<&TensorWrap::Dispose>),
                         InstanceMethod("clone", &TensorWrap::Guard<&TensorWrap::Clone>),
                         InstanceMethod("to", &TensorWrap::Guard<&TensorWrap::To>),
                         InstanceMethod("item", &TensorWrap::Guard<&TensorWrap::Item>),
                         InstanceMethod("narrow", &TensorWrap::Guard<&TensorWrap::Narrow>),
                         InstanceMethod("copyFrom", &TensorWrap::Guard<&TensorWrap::CopyFrom>),
                         InstanceMethod("view", &TensorWrap::Guard<&TensorWrap::View>),
                     });
}

namespace {
std::atomic<int64_t> liveCount{0}, liveBytes{0};
}

int64_t TensorWrap::LiveCount() { return liveCount.load(); }
int64_t TensorWrap::LiveBytes() { return liveBytes.load(); }

TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : GuardedWrap<TensorWrap>(info) {
  guarded(info.Env(), [&] {
    if (info.Length() != 2 || !info[0].IsExternal())
      Fail("Tensor cannot be constructed directly; use Tensor.fromArray(data, shape, dtype, device) or Tensor.zeros(...)");
    tensor_ = *info[0].As<Napi::External<at::Tensor>>().Data();
    liveCount++;
    liveBytes += static_cast<int64_t>(tensor_.numel() * tensor_.element_size());
    auto& data = Data(info.Env());
    if (!data.scopes.empty() && data.persistentDepth == 0) {
      handle_ = std::make_shared<TensorWrap*>(this);
      data.scopes.back().push_back({Napi::Weak(info.This().As<Napi::Object>()), handle_});
    }
    if (info[1].As<Napi::Boolean>().Value()) {
      reportedBytes_ = static_cast<int64_t>(tensor_.numel() * tensor_.element_size());
      Napi::MemoryManagement::AdjustExternalMemory(info.Env(), reportedBytes_);
    }
  });
}

Napi::Object TensorWrap::New(Napi::Env env, at::Tensor t, bool reportMemory) {
  auto ext = Napi::External<at::Tensor>::New(env, &t);
  return Data(env).tensor.New({ext, Napi::Boolean::New(env, reportMemory)});
}

at::Tensor& TensorWrap::From(const Napi::Value& v, const std::string& name) {
  auto& ctor = Data(v.Env()).tensor;
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor.Value()))
    Fail("argument '" + name + "' must be a Tensor");
  return Unwrap(v.As<Napi::Object>())->Live();
}

at::Tensor& TensorWrap::Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  try {
    return From(info[i], name);
  } catch (const UsageError& e) {
    std::string msg = e.what();
    if (msg.rfind("this tensor", 0) == 0) Fail("argument '" + std::string(name) + "': " + msg);
    throw;
  }
}

at::Tensor& TensorWrap::Live() {
  if (disposed_) Fail("this tensor was disposed; it cannot be used after dispose()");
  return tensor_;
}

void TensorWrap::Release(Napi::Env env) {
  if (disposed_) return;
  disposed_ = true;
  if (tensor_.defined()) {
    liveCount--;
    liveBytes -= static_cast<int64_t>(tensor_.numel() * tensor_.element_size());
  }
  tensor_ = at::Tensor();
  if (reportedBytes_ != 0) Napi::MemoryManagement::AdjustExternalMemory(env, -reportedBytes_);
  reportedBytes_ = 0;
}

void TensorWrap::Finalize(Napi::Env env) {
  Release(env);
  if (handle_) *handle_ = nullptr;
}

TensorWrap::~TensorWrap() {
  if (handle_) *handle_ = nullptr;
}

namespace {

// The values of a typed-array argument as a CPU tensor over its memory (no
// copy), checked against the dtype they are headed for: integers go to int64
// only, floats to float dtypes only.
at::Tensor TypedArrayView(const Napi::Value& v, at::ScalarType dtype) {
  const char* kinds = "argument 'data' must be a Float32Array, Float64Array, Int32Array or BigInt64Array";
  if (!v.IsTypedArray()) Fail(kinds);
  auto ta = v.As<Napi::TypedArray>();
  at::ScalarType source;
  switch (ta.TypedArrayType()) {
    case napi_float32_array: source = at::kFloat; break;
    case napi_float64_array: source = at::kDouble; break;
    case napi_int32_array: source = at::kInt; break;
    case napi_bigint64_array: source = at::kLong; break;
    default: Fail(kinds);
  }
  bool integral = source == at::kInt || source == at::kLong;
  if (integral != (dtype == at::kLong))
    Fail("argument 'data' (" + DTypeName(source) + " values) does not fit dtype '" + DTypeName(dtype) +
         "'; pass a Float32Array/Float64Array for float dtypes and an Int32Array/BigInt64Array for int64");
  auto* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  return at::from_blob(base, {static_cast<int64_t>(ta.ElementLength())}, at::TensorOptions().dtype(source));
}

}  // namespace

Napi::Value TensorWrap::FromArray(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto shape = ShapeArg(info, 1, "shape");
  auto dtype = ParseDType(StringArg(info, 2, "dtype"), "argument 'dtype'");
  auto device = ParseDevice(StringArg(info, 3, "device"), "argument 'device'");
  at::Tensor view = TypedArrayView(info[0], dtype);
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  if (numel != view.numel())
    Fail("argument 'shape' " + ShapeString(shape) + " holds " + std::to_string(numel) + " elements but 'data' has " +
         std::to_string(view.numel()));
  at::Tensor t = view.reshape(shape).to(dtype, /*non_blocking=*/false, /*copy=*/true);
  if (!device.is_cpu()) t = t.to(device);
  return New(env, t);
}

Napi::Value TensorWrap::CopyFrom(const Napi::CallbackInfo& info) {
  at::Tensor& t = Live();
  if (Pinned()) Fail("this tensor is in use by a running async call; await it before copyFrom()");
  if (t.scalar_type() != at::kFloat && t.scalar_type() != at::kDouble && t.scalar_type() != at::kLong)
    Fail("copyFrom() writes float32, float64 and int64 tensors; this one is " + DTypeName(t.scalar_type()));
  at::Tensor view = TypedArrayView(info[0], t.scalar_type());
  if (view.numel() != t.numel())
    Fail("argument 'data' has " + std::to_string(view.numel()) + " elements but this tensor of shape " +
         ShapeString(t.sizes()) + " holds " + std::to_string(t.numel()) + "; pass data of exactly that length");
  // copy_ converts the dtype and crosses devices; the write lands in place, so
  // views of this tensor see it
  t.copy_(view.view(t.sizes()));
  return info.This();
}

Napi::Value TensorWrap::BeginScope(const Napi::CallbackInfo& info) {
  Data(info.Env()).scopes.emplace_back();
  return info.Env().Undefined();
}

Napi::Value TensorWrap::EndScope(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto& scopes = Data(env).scopes;
  if (scopes.empty()) Fail("endScope() without a matching beginScope()");
  // null: keep everything (handed to the enclosing scope)
  bool keepAll = info.Length() > 0 && info[0].IsNull();
  if (!keepAll && (info.Length() < 1 || !info[0].IsArray())) Fail("argument 'keep' must be an array of tensors or null");
  auto keepList = keepAll ? Napi::Array::New(env) : info[0].As<Napi::Array>();
  std::vector<TensorWrap*> keep;
  for (uint32_t i = 0; i < keepList.Length(); ++i) {
    Napi::Value v = keepList.Get(i);
    if (v.IsObject() && v.As<Napi::Object>().InstanceOf(Data(env).tensor.Value())) keep.push_back(Unwrap(v.As<Napi::Object>()));
  }
  std::vector<ScopedTensor> made = std::move(scopes.back());
  scopes.pop_back();
  for (auto& entry : made) {
    TensorWrap* t = *entry.wrap;
    if (t == nullptr) continue;  // finalized already
    if (entry.ref.Value().IsEmpty()) {
      // collected, its finalizer not yet run: nothing can reach it, free it now
      t->Release(env);
      continue;
    }
    if (t->Pinned()) continue;  // a running async call holds it; the collector frees it later
    if (keepAll || std::find(keep.begin(), keep.end(), t) != keep.end()) {
      if (!scopes.empty()) scopes.back().push_back(std::move(entry));
    } else {
      t->Release(env);
    }
  }
  return env.Undefined();
}

Napi::Value TensorWrap::Persistent(const Napi::CallbackInfo& info) {
  auto& depth = Data(info.Env()).persistentDepth;
  if (info.Length() < 1 || !info[0].IsBoolean()) Fail("argument 'on' must be a boolean");
  if (info[0].As<Napi::Boolean>().Value()) depth++;
  else if (depth > 0) depth--;
  return info.Env().Undefined();
}

Napi::Value TensorWrap::Zeros(const Napi::CallbackInfo& info) {
  auto shape = ShapeArg(info, 0, "shape");
  auto dtype = ParseDType(StringArg(info, 1, "dtype"), "argument 'dtype'");
  auto device = ParseDevice(StringArg(info, 2, "device"), "argument 'device'");
  return New(info.Env(), at::zeros(shape, at::TensorOptions().dtype(dtype).device(device)));
}

Napi::Value TensorWrap::ToArray(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  at::Tensor t = Live().detach().to(c10::Device(c10::kCPU)).contiguous();
  size_t n = static_cast<size_t>(t.numel());
  switch (t.scalar_type()) {
    case at::kFloat: {
      auto out = Napi::Float32Array::New(env, n);
      if (n) std::memcpy(out.Data(), t.data_ptr(), n * sizeof(float));
      return out;
    }
    case at::kDouble: {
      auto out = Napi::Float64Array::New(env, n);
      if (n) std::memcpy(out.Data(), t.data_ptr(), n * sizeof(double));
      return out;
    }
    case at::kLong: {
      auto buf = Napi::ArrayBuffer::New(env, n * sizeof(int64_t));
      if (n) std::memcpy(buf.Data(), t.data_ptr(), n * sizeof(int64_t));
      return Napi::TypedArrayOf<int64_t>::New(env, n, buf, 0, napi_bigint64_array);
    }
    case at::kByte: {
      auto out = Napi::Uint8Array::New(env, n);
      if (n) std::memcpy(out.Data(), t.data_ptr(), n);
      return out;
    }
    default: Fail("toArray: unsupported dtype " + DTypeName(t.scalar_type()));
  }
}

Napi::Value TensorWrap::Shape(const Napi::CallbackInfo& info) {
  auto sizes = Live().sizes();
  auto arr = Napi::Array::New(info.Env(), sizes.size());
  for (uint32_t i = 0; i < sizes.size(); ++i) arr.Set(i, Napi::Number::New(info.Env(), static_cast<double>(sizes[i])));
  return arr;
}

Napi::Value TensorWrap::DType(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DTypeName(Live().scalar_type()));
}

Napi::Value TensorWrap::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DeviceName(Live().device()));
}

Napi::Value TensorWrap::Numel(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Live().numel()));
}

Napi::Value TensorWrap::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed_); }

Napi::Value TensorWrap::Dispose(const Napi::CallbackInfo& info) {
  if (Pinned()) Fail("this tensor is in use by a running async call; await it before dispose()");
  Release(info.Env());
  return info.Env().Undefined();
}

Napi::Value TensorWrap::Clone(const Napi::CallbackInfo& info) { return New(info.Env(), Live().detach().clone()); }

Napi::Value TensorWrap::To(const Napi::CallbackInfo& info) {
  auto device = ParseDevice(StringArg(info, 0, "device"), "argument 'device'");
  at::Tensor t = Live().detach();
  at::ScalarType dtype = t.scalar_type();
  if (info.Length() > 1 && !info[1].IsUndefined()) dtype = ParseDType(StringArg(info, 1, "dtype"), "argument 'dtype'");
  return New(info.Env(), t.to(device, dtype, /*non_blocking=*/false, /*copy=*/true));
}

Napi::Value TensorWrap::Item(const Napi::CallbackInfo& info) {
  auto& t = Live();
  if (t.numel() != 1) Fail("item() needs a tensor with exactly one element, this one has shape " + ShapeString(t.sizes()));
  return Napi::Number::New(info.Env(), t.item<double>());
}

// narrow(start, length): elements [start, start + length) of a 1-D tensor,
// as a view (writes go to this tensor; its memory is reported once, here).
Napi::Value TensorWrap::View(const Napi::CallbackInfo& info) {
  auto& t = Live();
  auto shape = ShapeArg(info, 0, "shape");
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  if (numel != t.numel())
    Fail("view(shape): shape " + ShapeString(shape) + " holds " + std::to_string(numel) + " elements, this tensor " +
         std::to_string(t.numel()));
  if (!t.is_contiguous()) Fail("view(shape) needs a contiguous tensor; this one is a strided view (clone() it first)");
  return New(info.Env(), t.view(shape), false);
}

Napi::Value TensorWrap::Narrow(const Napi::CallbackInfo& info) {
  auto& t = Live();
  if (t.dim() != 1) Fail("narrow(start, length) needs a 1-D tensor, this one has shape " + ShapeString(t.sizes()));
  double start = NumberArg(info, 0, "start"), length = NumberArg(info, 1, "length");
  if (start < 0 || start != std::floor(start) || length < 0 || length != std::floor(length) ||
      start + length > static_cast<double>(t.numel()))
    Fail("narrow(start, length): [start, start + length) must be whole numbers inside [0, " + std::to_string(t.numel()) +
         "), got start " + std::to_string(start) + ", length " + std::to_string(length));
  return New(info.Env(), t.narrow(0, static_cast<int64_t>(start), static_cast<int64_t>(length)), false);
}

void CheckSameLayout(const at::Tensor& a, const char* nameA, const at::Tensor& b, const char* nameB) {
  if (a.sizes() != b.sizes())
    Fail(std::string("'") + nameA + "' has shape " + ShapeString(a.sizes()) + " but '" + nameB + "' has shape " +
         ShapeString(b.sizes()) + "; they must match");
  if (a.scalar_type() != b.scalar_type())
    Fail(std::string("'") + nameA + "' is " + DTypeName(a.scalar_type()) + " but '" + nameB + "' is " +
         DTypeName(b.scalar_type()) + "; they must match");
  if (a.device() != b.device())
    Fail(std::string("'") + nameA + "' is on " + DeviceName(a.device()) + " but '" + nameB + "' is on " +
         DeviceName(b.device()) + "; move one with .to(device)");
}

void CheckFlat(const at::Tensor& t, const char* name, int64_t numel, at::ScalarType dtype, const c10::Device& device) {
  if (t.dim() != 1 || t.numel() != numel)
    Fail(std::string("argument '") + name + "' must be a flat vector of " + std::to_string(numel) +
         " elements, got shape " + ShapeString(t.sizes()));
  if (t.scalar_type() != dtype)
    Fail(std::string("argument '") + name + "' must be " + DTypeName(dtype) + ", got " + DTypeName(t.scalar_type()));
  if (t.device() != device)
    Fail(std::string("argument '") + name + "' must be on " + DeviceName(device) + ", got " + DeviceName(t.device()));
}

}  // namespace usam
