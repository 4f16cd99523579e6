#include "model.h"

#include "addon.h"
#include "args.h"
#include "generator.h"
#include "tensor.h"

namespace usam {

namespace ag = torch::autograd;

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
                         InstanceMethod("forward", &M::Guard<&M::Forward>),
                         InstanceMethod("loss", &M::Guard<&M::Loss>),
                         InstanceMethod("lossAndGrad", &M::Guard<&M::LossAndGrad>),
                         InstanceMethod("beginStats", &M::Guard<&M::BeginStats>),
                         InstanceMethod("commitStats", &M::Guard<&M::CommitStats>),
                         InstanceMethod("discardStats", &M::Guard<&M::DiscardStats>),
                         InstanceMethod("statsSums", &M::Guard<&M::StatsSums>),
                         InstanceMethod("poolStats", &M::Guard<&M::PoolStats>),
                         InstanceAccessor("lastCorrect", &M::Guard<&M::LastCorrect>, nullptr),
                         InstanceMethod("hvp", &M::Guard<&M::Hvp>),
                         InstanceMethod("forwardAsync", &M::Guard<&M::Async<&M::ForwardCall>>),
                         InstanceMethod("lossAndGradAsync", &M::Guard<&M::Async<&M::LossAndGradCall>>),
                         InstanceMethod("hvpAsync", &M::Guard<&M::Async<&M::HvpCall>>),
                         InstanceMethod("curvature", &M::Guard<&M::Curvature>),
                         InstanceMethod("curvatureAsync", &M::Guard<&M::Async<&M::CurvatureCall>>),
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
    // {torchscript: FILE, loss?}: a module saved by torch.jit.save
    if (HasField(spec, "torchscript"))
      net_ = std::make_unique<Network>(ScriptModule::Load(StringField(spec, "torchscript", "spec"), device),
                                       spec.Get("loss"), dtype, device, static_cast<uint64_t>(dropoutSeed));
    else
      net_ = std::make_unique<Network>(spec, dtype, device, static_cast<uint64_t>(initSeed),
                                       static_cast<uint64_t>(dropoutSeed));
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

at::Tensor ModelWrap::LossOf(const at::Tensor& x, const at::Tensor& y, bool updateStats, bool twice, at::Tensor* output) {
  auto& net = *net_;  // checked by the caller (also runs on the thread pool)
  at::Tensor out = net.Forward(x, updateStats, twice);
  if (output) *output = out;
  return net.Loss(out, y);
}

// Copies per-parameter results into one flat vector; a parameter that the
// loss does not depend on gets zeros.
void ModelWrap::WriteFlat(const std::vector<at::Tensor>& parts, at::Tensor& out) {
  at::NoGradGuard ng;
  const auto& slots = net_->slots.params;
  for (size_t i = 0; i < slots.size(); ++i) {
    at::Tensor dst = out.narrow(0, slots[i].offset, slots[i].numel);
    if (parts[i].defined())
      dst.copy_(parts[i].reshape(-1));
    else
      dst.zero_();
  }
}

// Σ_i <parts_i, v_i> with v split like the parameters; differentiable.
at::Tensor ModelWrap::DotFlat(const std::vector<at::Tensor>& parts, const at::Tensor& v) {
  const auto& slots = net_->slots.params;
  at::Tensor total;
  for (size_t i = 0; i < slots.size(); ++i) {
    if (!parts[i].defined()) continue;
    at::Tensor term = (parts[i] * v.narrow(0, slots[i].offset, slots[i].numel).view(slots[i].shape)).sum();
    total = total.defined() ? total + term : term;
  }
  return total.defined() ? total : at::zeros({}, v.options());
}

// ∇L(w) with its graph kept (create_graph), for differentiating again;
// `loss` receives L(w). Runs on any thread (the caller checked the model).
std::vector<at::Tensor> ModelWrap::GradientGraph(const at::Tensor& x, const at::Tensor& y, at::Tensor& loss) {
  loss = LossOf(x, y, false, true);
  return ag::grad({loss}, net_->params, {}, true, /*create_graph=*/true, true);
}

// ∇_w of the scalar `s` into `out`; zeros when s does not depend on w.
// `retain` keeps the graph behind s for further passes.
void ModelWrap::WriteGradient(const at::Tensor& s, at::Tensor& out, bool retain) {
  if (s.requires_grad())
    WriteFlat(ag::grad({s}, net_->params, {}, retain, false, true), out);
  else
    out.zero_();
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
  return Napi::Number::New(info.Env(), LossOf(x, y, update, false).item<double>());
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

// lossAndGrad(x, y, grad, updateStats): writes ∇L(w) into `grad`, returns L(w).
ModelCall ModelWrap::LossAndGradCall(const Napi::CallbackInfo& info) {
  auto [x, y] = Batch(info, 0);
  auto& out = FlatArg(info, 2, "grad");
  bool update = BoolArg(info, 3, "updateStats");
  auto loss = std::make_shared<double>(0);
  return {[this, x = x, y = y, out, update, loss]() mutable {
            auto& net = *net_;
            at::Tensor output;
            at::Tensor l = LossOf(x, y, update, false, &output);
            auto grads = ag::grad({l}, net.params, {}, false, false, /*allow_unused=*/true);
            WriteFlat(grads, out);
            // training accuracy for free: the logits are at hand
            if (y.scalar_type() == at::kLong && output.dim() == 2) {
              at::NoGradGuard ng;
              lastCorrect_ = output.argmax(1).eq(y).sum().item<int64_t>();
            } else {
              lastCorrect_ = -1;
            }
            *loss = l.item<double>();
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
  auto [x, y] = Batch(info, 0);
  auto& v = DirectionsArg(info, 2, "v", -1);
  auto& out = DirectionsArg(info, 3, "out", v.dim() == 2 ? v.size(0) : 0);
  std::string method = MethodArg(info, 4, {"forward-over-reverse", "double-backward"});
  PrimalCache* cache = nullptr;
  if (auto* wrap = HvpCacheWrap::Arg(info, 5)) cache = &wrap->Cache();
  auto loss = std::make_shared<double>(0);
  return {[this, x = x, y = y, v, out, method, loss, cache]() mutable {
            auto& net = *net_;
            if (method == "forward-over-reverse") {
              // The reverse pass writes blocks of `out` while it still reads v, the
              // parameters and the statistics: if `out` is any of them (e.g.
              // model.params), compute into a fresh vector and copy at the end.
              auto overlaps = [&](const at::Tensor& t) { return at::get_overlap_status(out, t) != at::MemOverlapStatus::No; };
              if (!overlaps(v) && !overlaps(net.flatParams) && !overlaps(net.flatBuffers)) {
                *loss = net.Hvp(x, y, v, out, cache);
                return;
              }
              at::Tensor fresh = at::empty_like(out);
              *loss = net.Hvp(x, y, v, fresh, cache);
              out.copy_(fresh);
              return;
            }
            // Double backward through the gradient's graph, kept in the caller's
            // cache or in one for this call: a block builds the graph once and
            // takes one backward pass of it per direction.
            PrimalCache local;
            PrimalCache& graph = cache ? *cache : local;
            bool block = v.dim() == 2;
            for (int64_t k = 0; k < (block ? v.size(0) : 1); ++k) {
              at::Tensor vk = block ? v.select(0, k) : v, outk = block ? out.select(0, k) : out;
              *loss = GraphHvp(x, y, vk, outk, graph);
            }
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
            auto& net = *net_;
            if (method == "forward-over-forward") {
              *loss = net.Curvature(x, y, v, out, cache);
              return;
            }
            // ⟨v, Hv⟩ per row: forward-over-reverse takes a block in one pass, double backward row by row
            at::Tensor hv = at::empty_like(v);
            if (method == "forward-over-reverse") {
              *loss = net.Hvp(x, y, v, hv, cache);
            } else {
              PrimalCache local;
              for (int64_t k = 0; k < (v.dim() == 2 ? v.size(0) : 1); ++k) {
                at::Tensor vk = v.dim() == 2 ? v.select(0, k) : v, hk = v.dim() == 2 ? hv.select(0, k) : hv;
                *loss = GraphHvp(x, y, vk, hk, cache ? *cache : local);
              }
            }
            at::NoGradGuard ng;
            out.copy_((v * hv).sum(-1).reshape(out.sizes()));
          },
          [loss](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *loss); }};
}

Napi::Value ModelWrap::Curvature(const Napi::CallbackInfo& info) { return RunNow(info.Env(), CurvatureCall(info)); }

double ModelWrap::GraphHvp(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, at::Tensor& out,
                           PrimalCache& cache) {
  auto& net = *net_;
  PrimalCache::Key key = net.CacheKey(x, y, "double-backward");
  if (!(cache.key == key) || cache.graph.empty()) {
    cache.Clear();
    try {
      cache.graph = GradientGraph(x, y, cache.loss);
    } catch (...) {
      cache.Clear();
      throw;
    }
    cache.key = key;
    ++cache.records;
  } else {
    ++cache.replays;
  }
  WriteGradient(DotFlat(cache.graph, v), out, /*retain=*/true);
  return cache.loss.item<double>();
}

// quadraticFormGrad(x, y, v, out): returns q = vᵀ H v and writes ∇_w q (a
// third derivative of the loss) into `out`; used by the exact estimator.
ModelCall ModelWrap::QuadraticFormGradCall(const Napi::CallbackInfo& info) {
  auto [x, y] = Batch(info, 0);
  auto& v = FlatArg(info, 2, "v");
  auto& out = FlatArg(info, 3, "out");
  auto q = std::make_shared<double>(0);
  return {[this, x = x, y = y, v, out, q]() mutable {
            at::Tensor l;
            at::Tensor gv = DotFlat(GradientGraph(x, y, l), v);
            if (!gv.requires_grad()) {
              out.zero_();
              *q = 0;
              return;
            }
            at::Tensor qt = DotFlat(ag::grad({gv}, net_->params, {}, true, true, true), v);
            WriteGradient(qt, out);
            *q = qt.item<double>();
          },
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
    deferred_.Reject(e.Value());
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
      deferred_.Reject(Napi::Error::New(Env(), e.what()).Value());
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

Napi::Value ModelWrap::GetRngState(const Napi::CallbackInfo& info) { return GeneratorState(info.Env(), Net().gen); }

Napi::Value ModelWrap::SetRngState(const Napi::CallbackInfo& info) {
  SetGeneratorState(Net().gen, info[0]);
  return info.Env().Undefined();
}

}  // namespace usam
