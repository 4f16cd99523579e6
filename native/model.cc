// Model and HvpCache (model.h): JS arguments checked and read into tensors
// and structs, Network's results back into JS values, and the libuv worker
// that runs the …Async calls. The maths is Network's (network.cc,
// derivatives.cc).
#include "model.h"

#include "addon.h"
#include "args.h"
#include "generator.h"
#include "spec_js.h"
#include "tensor.h"

namespace usam {

Napi::Function ModelWrap::Define(Napi::Env env) {
  using M = ModelWrap;
  return DefineClass(env, "Model",
                     {
                         InstanceAccessor("numParams", &M::Guard<&M::NumParams>, nullptr),
                         InstanceAccessor("dtype", &M::Guard<&M::DType>, nullptr),
                         InstanceAccessor("device", &M::Guard<&M::Device>, nullptr),
                         InstanceAccessor("training", &M::Guard<&M::Training>, nullptr),
                         InstanceMethod("paramInfo", &M::Guard<&M::ParamInfo>),
                         InstanceMethod("bufferInfo", &M::Guard<&M::BufferInfo>),
                         InstanceMethod("params", &M::Guard<&M::Params>),
                         InstanceMethod("buffers", &M::Guard<&M::Buffers>),
                         InstanceMethod("counters", &M::Guard<&M::Counters>),
                         InstanceMethod("setTraining", &M::Guard<&M::SetTraining>),
                         InstanceMethod("setPrecision", &M::Guard<&M::SetPrecision>),
                         InstanceMethod("forward", &M::Guard<&M::Forward>),
                         InstanceMethod("loss", &M::Guard<&M::Loss>),
                         InstanceMethod("lossAndGrad", &M::Guard<&M::LossAndGrad>),
                         InstanceMethod("beginStats", &M::Guard<&M::BeginStats>),
                         InstanceMethod("commitStats", &M::Guard<&M::CommitStats>),
                         InstanceMethod("discardStats", &M::Guard<&M::DiscardStats>),
                         InstanceMethod("statsSums", &M::Guard<&M::StatsSums>),
                         InstanceMethod("poolStats", &M::Guard<&M::PoolStats>),
                         InstanceAccessor("lastCorrect", &M::Guard<&M::LastCorrect>, nullptr),
                         InstanceAccessor("lastGradSum", &M::Guard<&M::LastGradSum>, nullptr),
                         InstanceAccessor("lastGradSquares", &M::Guard<&M::LastGradSquares>, nullptr),
                         InstanceAccessor("gradMethod", &M::Guard<&M::GradMethod>, nullptr),
                         InstanceMethod("hvp", &M::Guard<&M::Hvp>),
                         InstanceMethod("forwardAsync", &M::Guard<&M::Async<&M::ForwardCall>>),
                         InstanceMethod("lossAndGradAsync", &M::Guard<&M::Async<&M::LossAndGradCall>>),
                         InstanceMethod("hvpAsync", &M::Guard<&M::Async<&M::HvpCall>>),
                         InstanceMethod("curvature", &M::Guard<&M::Curvature>),
                         InstanceMethod("curvatureAsync", &M::Guard<&M::Async<&M::CurvatureCall>>),
                         InstanceMethod("gaussNewton", &M::Guard<&M::GaussNewton>),
                         InstanceMethod("gaussNewtonAsync", &M::Guard<&M::Async<&M::GaussNewtonCall>>),
                         InstanceMethod("fisherTargets", &M::Guard<&M::FisherTargets>),
                         InstanceMethod("quadraticFormGradAsync", &M::Guard<&M::Async<&M::QuadraticFormGradCall>>),
                         InstanceMethod("quadraticFormGrad", &M::Guard<&M::QuadraticFormGrad>),
                         InstanceMethod("getRngState", &M::Guard<&M::GetRngState>),
                         InstanceMethod("setRngState", &M::Guard<&M::SetRngState>),
                         InstanceMethod("dispose", &M::Guard<&M::Dispose>),
                     });
}

// new Model(spec, {dtype, device, initSeed, dropoutSeed}): the two streams'
// seeds, derived from the user's one seed in lib/random.ts
ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : GuardedWrap<ModelWrap>(info) {
  guarded(info.Env(), [&] {
    auto spec = ObjectArg(info, 0, "spec");
    auto opts = ObjectArg(info, 1, "options");
    auto dtype = ParseDType(StringField(opts, "dtype", "options"), "options.dtype");
    auto device = ParseDevice(StringField(opts, "device", "options"), "options.device");
    auto initSeed = IntField(opts, "initSeed", "options", 0);
    auto dropoutSeed = IntField(opts, "dropoutSeed", "options", 0);
    // {torchscript: FILE, loss?}: a module saved by torch.jit.save. The
    // module loads, then the dtype is checked, then the spec is read: the
    // order the errors have always come in.
    if (HasField(spec, "torchscript")) {
      auto module = ScriptModule::Load(StringField(spec, "torchscript", "spec"), device);
      Network::CheckDType(dtype);
      Napi::Value loss = spec.Get("loss");
      LossSpec lossSpec = loss.IsUndefined() || loss.IsNull() ? LossSpec{} : ParseLossSpec(loss, "options.loss");
      net_ = std::make_unique<Network>(std::move(module), lossSpec, dtype, device, static_cast<uint64_t>(dropoutSeed));
    } else {
      Network::CheckDType(dtype);
      net_ = std::make_unique<Network>(ParseNetworkSpec(spec), dtype, device, static_cast<uint64_t>(initSeed),
                                       static_cast<uint64_t>(dropoutSeed));
    }
    reportedBytes_ = (net_->flatParams.numel() + net_->flatBuffers.numel()) * net_->flatParams.element_size();
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), reportedBytes_);
  });
}

void ModelWrap::Finalize(Napi::Env env) {
  if (reportedBytes_) Napi::MemoryManagement::AdjustExternalMemory(env, -reportedBytes_);
  reportedBytes_ = 0;
  net_.reset();
}

Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  if (busy_) Fail("this model is running an async call (…Async); await it before dispose()");
  Finalize(info.Env());
  return info.Env().Undefined();
}

Network& ModelWrap::Net() {
  if (!net_) Fail("this model was disposed; it cannot be used after dispose()");
  if (busy_) Fail("this model is running an async call (…Async); await it before using the model again");
  return *net_;
}

Napi::Value ModelWrap::NumParams(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Net().slots.paramCount));
}
Napi::Value ModelWrap::DType(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DTypeName(Net().dtype));
}
Napi::Value ModelWrap::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DeviceName(Net().device));
}
Napi::Value ModelWrap::Training(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Net().training);
}
Napi::Value ModelWrap::SetTraining(const Napi::CallbackInfo& info) {
  Net().training = BoolArg(info, 0, "training");
  return info.Env().Undefined();
}
// setPrecision('fp32' | 'bf16' | 'fp16'): the products of Linear and Conv2d
// (a TorchScript module: its forward under autocast) in the
// once-differentiated passes (lossAndGrad, loss, forward) in that type.
Napi::Value ModelWrap::SetPrecision(const Napi::CallbackInfo& info) {
  std::string p = StringArg(info, 0, "precision");
  auto& net = Net();
  if (p == "fp32") {
    net.reduced = at::ScalarType::Undefined;
  } else if (p == "bf16" || p == "fp16") {
    if (net.dtype != at::kFloat) Fail("precision '" + p + "' needs a float32 model (its master parameters); this one is " + DTypeName(net.dtype));
    at::ScalarType type = p == "bf16" ? at::kBFloat16 : at::kHalf;
    // a LibTorch without these products on this device says so here, once, not in the first step
    bool tried = std::find(net.reducedChecked.begin(), net.reducedChecked.end(), type) != net.reducedChecked.end();
    if (!tried) try {
      at::NoGradGuard ng;
      auto a = at::ones({2, 2}, at::TensorOptions().dtype(type).device(net.device));
      (void)at::linear(a, a, a[0]).sum().item<double>();
      (void)at::conv2d(a.view({1, 1, 2, 2}), a.view({1, 1, 2, 2})).sum().item<double>();
    } catch (const std::exception& e) {
      Fail("precision '" + p + "': LibTorch " + std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + " has no " + (p == "bf16" ? "bfloat16" : "float16") + " linear/conv products on " +
           DeviceName(net.device) + " (" + CleanTorchMessage(e.what()) + "); use " + (p == "fp16" ? "'bf16'" : "'fp32'"));
    }
    if (!tried) net.reducedChecked.push_back(type);
    net.reduced = type;
  } else {
    Fail("argument 'precision' must be 'fp32', 'bf16' or 'fp16', got '" + p + "'");
  }
  return info.Env().Undefined();
}

template <typename SlotT>
static Napi::Array SlotInfo(Napi::Env env, const std::vector<SlotT>& slots) {
  auto arr = Napi::Array::New(env, slots.size());
  for (uint32_t i = 0; i < slots.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("name", slots[i].name);
    auto shape = Napi::Array::New(env, slots[i].shape.size());
    for (uint32_t k = 0; k < slots[i].shape.size(); ++k) shape.Set(k, static_cast<double>(slots[i].shape[k]));
    o.Set("shape", shape);
    o.Set("offset", static_cast<double>(slots[i].offset));
    o.Set("numel", static_cast<double>(slots[i].numel));
    arr.Set(i, o);
  }
  return arr;
}

Napi::Value ModelWrap::ParamInfo(const Napi::CallbackInfo& info) { return SlotInfo(info.Env(), Net().slots.params); }

Napi::Value ModelWrap::BufferInfo(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("buffers", SlotInfo(info.Env(), Net().slots.buffers));
  auto names = Napi::Array::New(info.Env(), Net().slots.counters.size());
  for (uint32_t i = 0; i < Net().slots.counters.size(); ++i) names.Set(i, Net().slots.counters[i]);
  o.Set("counters", names);
  return o;
}

// The flat buffers themselves (aliases, not copies): writing into them
// changes the model. Their memory is reported by the model.
Napi::Value ModelWrap::Params(const Napi::CallbackInfo& info) {
  return TensorWrap::New(info.Env(), Net().flatParams, false);
}
Napi::Value ModelWrap::Buffers(const Napi::CallbackInfo& info) {
  return TensorWrap::New(info.Env(), Net().flatBuffers, false);
}
Napi::Value ModelWrap::Counters(const Napi::CallbackInfo& info) {
  return TensorWrap::New(info.Env(), Net().counters, false);
}

std::pair<at::Tensor, at::Tensor> ModelWrap::Batch(const Napi::CallbackInfo& info, size_t first) {
  auto& net = Net();
  auto& x = TensorWrap::Arg(info, first, "x");
  net.CheckInput(x);
  auto& y = TensorWrap::Arg(info, first + 1, "y");
  net.CheckTarget(y, x.size(0));
  return {x, y};
}

at::Tensor& ModelWrap::FlatArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  auto& net = Net();
  auto& t = TensorWrap::Arg(info, i, name);
  CheckFlat(t, name, net.slots.paramCount, net.dtype, net.device);
  return t;
}

// A flat [P] vector, or (rows != 0) a contiguous block [K, P] of K
// directions; rows > 0 asks for exactly that K, rows 0 for a flat vector.
at::Tensor& ModelWrap::DirectionsArg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t rows) {
  auto& net = Net();
  auto& t = TensorWrap::Arg(info, i, name);
  if (rows != 0 && t.dim() == 2) {
    int64_t P = net.slots.paramCount;
    if (t.size(1) != P || t.size(0) < 1 || (rows > 0 && t.size(0) != rows) || !t.is_contiguous())
      Fail(std::string("argument '") + name + "' must be a block [" + (rows > 0 ? std::to_string(rows) : "K") + ", " +
           std::to_string(P) + "] of flat vectors, got shape " + c10::str(t.sizes()));
    CheckFlat(t.select(0, 0), name, P, net.dtype, net.device);
    return t;
  }
  if (rows > 0) Fail(std::string("argument '") + name + "' must be a block [" + std::to_string(rows) + ", " +
                     std::to_string(net.slots.paramCount) + "] like v, got shape " + c10::str(t.sizes()));
  CheckFlat(t, name, net.slots.paramCount, net.dtype, net.device);
  return t;
}

// forward(x): the model's outputs (no graph, no statistics moved).
ModelCall ModelWrap::ForwardCall(const Napi::CallbackInfo& info) {
  auto& net = Net();
  auto& x = TensorWrap::Arg(info, 0, "x");
  net.CheckInput(x);
  auto output = std::make_shared<at::Tensor>();
  return {[&net, x, output] {
            at::NoGradGuard ng;
            *output = net.Forward(x, false, false);
          },
          [output](Napi::Env env) -> Napi::Value { return TensorWrap::New(env, *output); }};
}

// loss(x, y, updateStats = false): the mean loss, no gradient.
Napi::Value ModelWrap::Loss(const Napi::CallbackInfo& info) {
  auto [x, y] = Batch(info, 0);
  bool update = info.Length() > 2 && !info[2].IsUndefined() ? BoolArg(info, 2, "updateStats") : false;
  at::NoGradGuard ng;
  return Napi::Number::New(info.Env(), Net().LossOf(x, y, update, false).item<double>());
}

// beginStats() / commitStats() / discardStats(): BatchNorm statistics over
// several passes (micro-batches), applied to the running statistics once.
Napi::Value ModelWrap::BeginStats(const Napi::CallbackInfo& info) {
  Net().BeginStats();
  return info.Env().Undefined();
}
Napi::Value ModelWrap::StatsSums(const Napi::CallbackInfo& info) {
  return TensorWrap::New(info.Env(), Net().StatsSums());
}
Napi::Value ModelWrap::PoolStats(const Napi::CallbackInfo& info) {
  Net().PoolStats(TensorWrap::Arg(info, 0, "sums"));
  return info.Env().Undefined();
}
Napi::Value ModelWrap::CommitStats(const Napi::CallbackInfo& info) {
  Net().CommitStats();
  return info.Env().Undefined();
}
Napi::Value ModelWrap::DiscardStats(const Napi::CallbackInfo& info) {
  Net().DiscardStats();
  return info.Env().Undefined();
}

// lossAndGrad(x, y, grad, updateStats, lossScale = 1, method?): writes ∇L(w)
// into `grad`, returns L(w). With a loss scale S (mixed precision), the
// backward pass differentiates S·L, so that small gradients survive float16,
// and the gradient is divided by S once, here (S a power of two: exact); an
// overflow leaves Inf/NaN in it for the caller's check. method: 'rules' (the
// layers' own reverse rules) or 'autograd'; left out, the rules wherever they
// apply (Network::RulesRefusal), autograd elsewhere.
ModelCall ModelWrap::LossAndGradCall(const Napi::CallbackInfo& info) {
  auto [x, y] = Batch(info, 0);
  auto& out = FlatArg(info, 2, "grad");
  bool update = BoolArg(info, 3, "updateStats");
  double scale = info.Length() > 4 && !info[4].IsUndefined() ? NumberArg(info, 4, "lossScale") : 1.0;
  if (!(scale > 0) || !std::isfinite(scale)) Fail("argument 'lossScale' must be a finite number > 0");
  Network::GradMethod method = Network::GradMethod::Auto;
  if (info.Length() > 5 && !info[5].IsUndefined()) {
    std::string name = StringArg(info, 5, "method");
    if (name == "rules") method = Network::GradMethod::Rules;
    else if (name == "autograd") method = Network::GradMethod::Autograd;
    else Fail("argument 'method' is '" + name + "'; use 'rules' or 'autograd' (or leave it out: the rules wherever they apply)");
  }
  auto loss = std::make_shared<double>(0);
  return {[this, x = x, y = y, out, update, loss, scale, method]() mutable {
            *loss = net_->LossAndGrad(x, y, out, update, lastCorrect_, scale, &lastGradSums_, method);
          },
          [loss](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *loss); }};
}

// hvp(x, y, v, out, method = 'forward-over-reverse', cache?): writes H v into
// `out`, returns L(w). Forward-over-reverse (Network::Hvp) does about 2/3 of
// the matrix work of double backward through autograd, which is kept as an
// independent second method. BatchNorm running statistics are never touched.
// With an HvpCache, what does not depend on v is computed on the first call
// for the batch and reused by the next ones (PrimalCache).
// Argument i, 'method': one of `allowed`, the first by default; a TorchScript
// model has no rules of this library's layers, so double backward is its default.
std::string ModelWrap::MethodArg(const Napi::CallbackInfo& info, size_t i, const std::vector<std::string>& allowed) {
  if (info.Length() <= i || info[i].IsUndefined()) return Net().IsScript() ? "double-backward" : allowed.front();
  std::string method = StringArg(info, i, "method");
  if (std::find(allowed.begin(), allowed.end(), method) == allowed.end()) {
    std::string choices;
    for (size_t k = 0; k < allowed.size(); ++k)
      choices += (k == 0 ? "'" : k + 1 == allowed.size() ? " or '" : ", '") + allowed[k] + "'";
    Fail("argument 'method' is '" + method + "'; use " + choices);
  }
  return method;
}

ModelCall ModelWrap::HvpCall(const Napi::CallbackInfo& info) {
  return ProductCall(info, MethodArg(info, 4, {"forward-over-reverse", "double-backward"}), &Network::HvpBy);
}

// (x, y, v, out, method, cache?) into run(method, ...): an HVP or a
// Gauss-Newton-type product of a flat v or a block [K, P]; returns L(w).
ModelCall ModelWrap::ProductCall(const Napi::CallbackInfo& info, std::string method, ProductRun run) {
  auto [x, y] = Batch(info, 0);
  auto& v = DirectionsArg(info, 2, "v", -1);
  auto& out = DirectionsArg(info, 3, "out", v.dim() == 2 ? v.size(0) : 0);
  PrimalCache* cache = nullptr;
  if (auto* wrap = HvpCacheWrap::Arg(info, 5)) cache = &wrap->Cache();
  auto loss = std::make_shared<double>(0);
  return {[this, x = x, y = y, v, out, method, loss, cache, run]() mutable {
            *loss = (net_.get()->*run)(method, x, y, v, out, cache);
          },
          [loss](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *loss); }};
}

// curvature(x, y, v, out, method?, cache?): writes vᵀHv into `out` ([1] for
// a flat v, [K] for a block [K, P]), returns L(w). 'forward-over-forward'
// (the default; Network::Curvature) pushes second-order jets forward and runs
// no reverse pass; 'forward-over-reverse' and 'double-backward' take ⟨v, Hv⟩
// from that HVP (the only way for a TorchScript model, and a cross-check).
ModelCall ModelWrap::CurvatureCall(const Napi::CallbackInfo& info) {
  auto& net = Net();
  auto [x, y] = Batch(info, 0);
  auto& v = DirectionsArg(info, 2, "v", -1);
  const int64_t K = v.dim() == 2 ? v.size(0) : 1;
  auto& out = TensorWrap::Arg(info, 3, "out");
  CheckFlat(out, "out", K, net.dtype, net.device);
  std::string method = MethodArg(info, 4, {"forward-over-forward", "forward-over-reverse", "double-backward"});
  PrimalCache* cache = nullptr;
  if (auto* wrap = HvpCacheWrap::Arg(info, 5)) cache = &wrap->Cache();
  auto loss = std::make_shared<double>(0);
  return {[this, x = x, y = y, v, out, method, loss, cache]() mutable {
            *loss = net_->CurvatureBy(method, x, y, v, out, cache);
          },
          [loss](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *loss); }};
}

Napi::Value ModelWrap::Curvature(const Napi::CallbackInfo& info) { return RunNow(info.Env(), CurvatureCall(info)); }

// gaussNewton(x, y, v, out, kind, cache?): writes G·v into `out` for kind
// 'ggn', 'empirical-fisher' or 'mc-fisher' (Network::GaussNewtonBy; v and out
// flat [P] or a block [K, P]), returns L(w).
ModelCall ModelWrap::GaussNewtonCall(const Napi::CallbackInfo& info) {
  return ProductCall(info, StringArg(info, 4, "kind"), &Network::GaussNewtonBy);  // the kind checked by GaussNewtonBy
}

Napi::Value ModelWrap::GaussNewton(const Napi::CallbackInfo& info) { return RunNow(info.Env(), GaussNewtonCall(info)); }

// fisherTargets(outputs, noise): targets drawn from the model's predictive
// distribution at `outputs` by transforming `noise` (Network::FisherTargets).
Napi::Value ModelWrap::FisherTargets(const Napi::CallbackInfo& info) {
  auto& net = Net();
  auto& z = TensorWrap::Arg(info, 0, "outputs");
  auto& noise = TensorWrap::Arg(info, 1, "noise");
  if (z.device() != net.device || noise.device() != net.device)
    Fail("outputs and noise must be on the model's device (" + net.device.str() + ")");
  return TensorWrap::New(info.Env(), net.FisherTargets(z, noise));
}

// quadraticFormGrad(x, y, v, out, cache?): returns q = vᵀ H v and writes ∇_w q
// (a third derivative of the loss) into `out`; used by the exact estimator.
// With an HvpCache, the gradient's graph is kept for the next direction.
ModelCall ModelWrap::QuadraticFormGradCall(const Napi::CallbackInfo& info) {
  auto [x, y] = Batch(info, 0);
  auto& v = FlatArg(info, 2, "v");
  auto& out = FlatArg(info, 3, "out");
  PrimalCache* cache = nullptr;
  if (auto* wrap = HvpCacheWrap::Arg(info, 4)) cache = &wrap->Cache();
  auto q = std::make_shared<double>(0);
  return {[this, x = x, y = y, v, out, q, cache]() mutable { *q = net_->QuadraticFormGrad(x, y, v, out, cache); },
          [q](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *q); }};
}

Napi::Function HvpCacheWrap::Define(Napi::Env env) {
  using C = HvpCacheWrap;
  return DefineClass(env, "HvpCache",
                     {
                         InstanceAccessor("bytes", &C::Guard<&C::Bytes>, nullptr),
                         InstanceAccessor("records", &C::Guard<&C::Records>, nullptr),
                         InstanceAccessor("replays", &C::Guard<&C::Replays>, nullptr),
                         InstanceAccessor("disposed", &C::Guard<&C::Disposed>, nullptr),
                         InstanceMethod("clear", &C::Guard<&C::Clear>),
                         InstanceMethod("dispose", &C::Guard<&C::Dispose>),
                     });
}

HvpCacheWrap::HvpCacheWrap(const Napi::CallbackInfo& info) : GuardedWrap<HvpCacheWrap>(info) {}

HvpCacheWrap* HvpCacheWrap::Arg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return nullptr;
  if (!info[i].IsObject() || !info[i].As<Napi::Object>().InstanceOf(Data(info.Env()).hvpCache.Value()))
    Fail("argument 'cache' must be an HvpCache (new native().HvpCache()) or undefined");
  auto* wrap = Unwrap(info[i].As<Napi::Object>());
  wrap->Cache();  // refuses a disposed one
  return wrap;
}

PrimalCache& HvpCacheWrap::Cache() {
  if (!cache_) Fail("this HvpCache was disposed; it cannot be used after dispose()");
  return *cache_;
}

void HvpCacheWrap::CheckIdle(const char* what) const {
  if (pins_ > 0) Fail(std::string("this HvpCache is in use by a running async HVP; await it before ") + what);
}

Napi::Value HvpCacheWrap::Bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cache_ ? static_cast<double>(cache_->Bytes()) : 0.0);
}
Napi::Value HvpCacheWrap::Records(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Cache().records));
}
Napi::Value HvpCacheWrap::Replays(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Cache().replays));
}
Napi::Value HvpCacheWrap::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !cache_); }
Napi::Value HvpCacheWrap::Clear(const Napi::CallbackInfo& info) {
  CheckIdle("clear()");
  Cache().Clear();
  return info.Env().Undefined();
}
Napi::Value HvpCacheWrap::Dispose(const Napi::CallbackInfo& info) {
  CheckIdle("dispose()");
  cache_.reset();
  return info.Env().Undefined();
}

// The synchronous entry points run the call at once; the Async ones run it on
// libuv's thread pool and return a Promise (ModelCallWorker).
Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) { return RunNow(info.Env(), ForwardCall(info)); }
Napi::Value ModelWrap::LossAndGrad(const Napi::CallbackInfo& info) { return RunNow(info.Env(), LossAndGradCall(info)); }
Napi::Value ModelWrap::Hvp(const Napi::CallbackInfo& info) { return RunNow(info.Env(), HvpCall(info)); }
Napi::Value ModelWrap::QuadraticFormGrad(const Napi::CallbackInfo& info) {
  return RunNow(info.Env(), QuadraticFormGradCall(info));
}

Napi::Value ModelWrap::RunNow(Napi::Env env, ModelCall call) {
  call.compute();
  return call.result(env);
}

namespace {

// Runs one model call on libuv's thread pool. While it runs, the model
// refuses every other call (busy_), and the model and the argument tensors
// are held (references keep them from the collector, pins from dispose()).
// A C++ exception of the compute becomes the Promise's rejection.
class ModelCallWorker : public Napi::AsyncWorker {
 public:
  ModelCallWorker(Napi::Env env, ModelCall call, bool& busy, Napi::Object model, std::vector<Napi::Object> tensors,
                  std::vector<Napi::Object> caches)
      : Napi::AsyncWorker(env), call_(std::move(call)), busy_(busy), deferred_(Napi::Promise::Deferred::New(env)) {
    model_ = Napi::Persistent(model);
    for (auto& t : tensors) {
      TensorWrap::Unwrap(t)->Pin();
      tensors_.push_back(Napi::Persistent(t));
    }
    for (auto& c : caches) {
      HvpCacheWrap::Unwrap(c)->Pin();
      caches_.push_back(Napi::Persistent(c));
    }
    busy_ = true;
  }
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      call_.compute();
    } catch (const c10::Error& e) {
      SetError(CleanTorchMessage(e.what_without_backtrace()));
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("universal-sam: unknown native error");
    }
  }
  void OnOK() override {
    Settle();
    Napi::Value result = guardedResult();
    if (!result.IsEmpty()) deferred_.Resolve(result);
  }
  void OnError(const Napi::Error& e) override {
    Settle();
    deferred_.Reject(JsError(Env(), e.Message()).Value());
  }

 private:
  void Settle() {
    busy_ = false;
    for (auto& t : tensors_) TensorWrap::Unwrap(t.Value())->Unpin();
    for (auto& c : caches_) HvpCacheWrap::Unwrap(c.Value())->Unpin();
  }
  Napi::Value guardedResult() {
    try {
      return call_.result(Env());
    } catch (const std::exception& e) {
      deferred_.Reject(JsError(Env(), e.what()).Value());
      return Napi::Value();
    }
  }

  ModelCall call_;
  bool& busy_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference model_;
  std::vector<Napi::ObjectReference> tensors_, caches_;
};

}  // namespace

Napi::Value ModelWrap::RunAsync(const Napi::CallbackInfo& info, ModelCall call) {
  std::vector<Napi::Object> tensors, caches;
  for (size_t i = 0; i < info.Length(); ++i) {
    if (!info[i].IsObject()) continue;
    auto o = info[i].As<Napi::Object>();
    if (o.InstanceOf(Data(info.Env()).tensor.Value())) tensors.push_back(o);
    if (o.InstanceOf(Data(info.Env()).hvpCache.Value())) caches.push_back(o);
  }
  auto* worker = new ModelCallWorker(info.Env(), std::move(call), busy_, info.This().As<Napi::Object>(), tensors, caches);
  auto promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value ModelWrap::LastCorrect(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(lastCorrect_));
}

// Σ of the last lossAndGrad's gradient (null where the copy did not compute it: CUDA)
Napi::Value ModelWrap::LastGradSum(const Napi::CallbackInfo& info) {
  if (!lastGradSums_) return info.Env().Null();
  return Napi::Number::New(info.Env(), lastGradSums_->sum);
}

// Σ of the squares of the last lossAndGrad's gradient (‖grad‖², in double),
// or null where the pass did not compute it (as lastGradSum)
Napi::Value ModelWrap::LastGradSquares(const Napi::CallbackInfo& info) {
  if (!lastGradSums_) return info.Env().Null();
  return Napi::Number::New(info.Env(), lastGradSums_->squares);
}

// The method lossAndGrad takes when none is given, at loss scale 1: 'rules'
// where the layers' rules apply (Network::RulesRefusal), else 'autograd'.
Napi::Value ModelWrap::GradMethod(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), Net().RulesRefusal(1.0).empty() ? "rules" : "autograd");
}

Napi::Value ModelWrap::GetRngState(const Napi::CallbackInfo& info) { return GeneratorState(info.Env(), Net().gen); }

Napi::Value ModelWrap::SetRngState(const Napi::CallbackInfo& info) {
  SetGeneratorState(Net().gen, info[0]);
  return info.Env().Undefined();
}

}  // namespace usam
