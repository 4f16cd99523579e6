// The Model and HvpCache classes of the native surface: they marshal JS
// arguments into tensors and plain structs (spec_js.h), call Network
// (network.h), which does all the maths, and turn its results into JS values.
// All parameters live in one flat buffer (module parameters are views into
// it, in PyTorch's order: modules in order, weight then bias); all BatchNorm
// running statistics live in a second flat buffer. Gradients and HVPs come
// back as flat vectors.
#pragma once
#include "errors.h"
#include "network.h"

namespace usam {

// One model call split in two: arguments are checked and gathered on the
// JavaScript thread; `compute` then runs at once (sync) or on libuv's thread
// pool (the …Async twins), and `result` makes the JavaScript value on the
// JavaScript thread afterwards. One body serves both.
struct ModelCall {
  std::function<void()> compute;
  std::function<Napi::Value(Napi::Env)> result;
};

// new HvpCache(): what a model's HVPs on one batch can reuse (PrimalCache),
// passed as hvp()'s last argument. It belongs to no model: an HVP with
// another model, batch or parameters re-records it.
class HvpCacheWrap : public GuardedWrap<HvpCacheWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit HvpCacheWrap(const Napi::CallbackInfo& info);
  // The cache behind argument i (undefined or null: none).
  static HvpCacheWrap* Arg(const Napi::CallbackInfo& info, size_t i);
  PrimalCache& Cache();
  // A running async HVP holds its cache: dispose() and clear() wait for it.
  void Pin() { ++pins_; }
  void Unpin() { --pins_; }

 private:
  Napi::Value Bytes(const Napi::CallbackInfo& info);
  Napi::Value Records(const Napi::CallbackInfo& info);
  Napi::Value Replays(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Clear(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  void CheckIdle(const char* what) const;

  std::unique_ptr<PrimalCache> cache_ = std::make_unique<PrimalCache>();
  int pins_ = 0;
};

class ModelWrap : public GuardedWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit ModelWrap(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env env) override;

 private:
  Napi::Value NumParams(const Napi::CallbackInfo& info);
  Napi::Value ParamInfo(const Napi::CallbackInfo& info);
  Napi::Value BufferInfo(const Napi::CallbackInfo& info);
  Napi::Value Params(const Napi::CallbackInfo& info);
  Napi::Value Buffers(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);
  Napi::Value DType(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Training(const Napi::CallbackInfo& info);
  Napi::Value SetTraining(const Napi::CallbackInfo& info);
  Napi::Value SetPrecision(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Loss(const Napi::CallbackInfo& info);
  Napi::Value LossAndGrad(const Napi::CallbackInfo& info);
  Napi::Value BeginStats(const Napi::CallbackInfo& info);
  Napi::Value CommitStats(const Napi::CallbackInfo& info);
  Napi::Value DiscardStats(const Napi::CallbackInfo& info);
  Napi::Value StatsSums(const Napi::CallbackInfo& info);
  Napi::Value PoolStats(const Napi::CallbackInfo& info);
  Napi::Value LastCorrect(const Napi::CallbackInfo& info);
  Napi::Value LastGradSum(const Napi::CallbackInfo& info);
  Napi::Value LastGradSquares(const Napi::CallbackInfo& info);
  Napi::Value GradMethod(const Napi::CallbackInfo& info);
  Napi::Value Hvp(const Napi::CallbackInfo& info);
  Napi::Value Curvature(const Napi::CallbackInfo& info);
  Napi::Value GaussNewton(const Napi::CallbackInfo& info);
  Napi::Value FisherTargets(const Napi::CallbackInfo& info);
  Napi::Value QuadraticFormGrad(const Napi::CallbackInfo& info);
  Napi::Value GetRngState(const Napi::CallbackInfo& info);
  Napi::Value SetRngState(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  ModelCall ForwardCall(const Napi::CallbackInfo& info);
  ModelCall LossAndGradCall(const Napi::CallbackInfo& info);
  ModelCall HvpCall(const Napi::CallbackInfo& info);
  ModelCall CurvatureCall(const Napi::CallbackInfo& info);
  ModelCall GaussNewtonCall(const Napi::CallbackInfo& info);
  using ProductRun = double (Network::*)(const std::string&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         at::Tensor&, PrimalCache*);
  ModelCall ProductCall(const Napi::CallbackInfo& info, std::string method, ProductRun run);
  ModelCall QuadraticFormGradCall(const Napi::CallbackInfo& info);
  Napi::Value RunNow(Napi::Env env, ModelCall call);
  Napi::Value RunAsync(const Napi::CallbackInfo& info, ModelCall call);
  template <ModelCall (ModelWrap::*Make)(const Napi::CallbackInfo&)>
  Napi::Value Async(const Napi::CallbackInfo& info) {
    return RunAsync(info, (this->*Make)(info));
  }

  // The network; refuses use after dispose and while an async call runs.
  Network& Net();
  // Checks a batch against the model and returns (inputs, targets).
  std::pair<at::Tensor, at::Tensor> Batch(const Napi::CallbackInfo& info, size_t first);
  at::Tensor& FlatArg(const Napi::CallbackInfo& info, size_t i, const char* name);
  at::Tensor& DirectionsArg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t rows);
  std::string MethodArg(const Napi::CallbackInfo& info, size_t i, const std::vector<std::string>& allowed);

  std::unique_ptr<Network> net_;
  int64_t reportedBytes_ = 0;
  std::optional<FlatSums> lastGradSums_;  // Σ and Σ² of the last lossAndGrad's gradient (Network::LossAndGrad), when computed
  int64_t lastCorrect_ = -1;  // correctly classified samples of the last lossAndGrad (cross-entropy)
  bool busy_ = false;         // an async call is running
};

}  // namespace usam
