// The network behind a model: its layers (built from a NetworkSpec) or a
// TorchScript module, the flat parameter and buffer storage, the forward pass
// with BatchNorm statistics pooled over micro-batches, the loss, and its
// derivatives: gradients, H·v (forward-over-reverse or double backward),
// vᵀHv (jets) and ∇(vᵀHv). network.cc holds construction, storage, forward
// and statistics; derivatives.cc the loss and every derivative. Nothing here
// knows Node-API: model.cc marshals JS arguments into these calls.
#pragma once
#include "fused.h"
#include "layer.h"
#include "script.h"

#include <optional>

namespace usam {

class Network {
 public:
  // Two streams: one initialises the parameters, the other (kept as `gen`)
  // draws dropout masks, so masks never replay the words that made w₀.
  Network(const NetworkSpec& spec, at::ScalarType dtype, c10::Device device, uint64_t initSeed, uint64_t dropoutSeed);
  // A TorchScript module as the network: its parameters and buffers are
  // re-pointed into the flat storage (converted to `dtype`).
  Network(std::shared_ptr<ScriptModule> script, const LossSpec& loss, at::ScalarType dtype, c10::Device device,
          uint64_t dropoutSeed);
  // A model's dtype is float32 or float64 (the constructors check it; the
  // caller may check first, to report it before the spec's errors).
  static void CheckDType(at::ScalarType dtype);
  // Whether the network is a TorchScript module: HVPs by double backward only.
  bool IsScript() const { return script_ != nullptr; }

  at::Tensor Forward(const at::Tensor& x, bool updateStats, bool twiceDifferentiable);
  at::Tensor Loss(const at::Tensor& output, const at::Tensor& target) const;
  // The same, handing out the log-probabilities cross-entropy computes (left alone for the other losses).
  at::Tensor LossWith(const at::Tensor& output, const at::Tensor& target, at::Tensor* logProbs) const;
  // Mean loss of a batch, with a graph when parameters need gradients.
  // `output`, when given, receives the model's outputs.
  at::Tensor LossOf(const at::Tensor& x, const at::Tensor& y, bool updateStats, bool twiceDifferentiable,
                    at::Tensor* output = nullptr);
  // How LossAndGrad differentiates: by the layers' own first-order reverse
  // rules (Layer::ForwardGrad: no autograd graph, the gradients written
  // straight into the flat vector), by autograd, or (Auto) by the rules
  // wherever they apply (RulesRefusal empty) and by autograd elsewhere.
  enum class GradMethod { Auto, Rules, Autograd };
  // Why the rules cannot take this pass's gradient (lossScale: its loss
  // scale), or empty when they can: every layer has one, not TorchScript,
  // the model's own precision, no loss scale.
  std::string RulesRefusal(double lossScale) const;
  // ∇L(w) into the flat `grad`; returns L(w). `correct` receives the correctly
  // classified samples for class labels and [batch, classes] outputs, else -1.
  // gradSums: Σ of the written gradient (before the loss scale's division:
  // the NaN/Inf check) and Σ of its squares (after it: ‖grad‖²) when the
  // pass computed them (CPU), else empty
  double LossAndGrad(const at::Tensor& x, const at::Tensor& y, at::Tensor& grad, bool updateStats, int64_t& correct, double lossScale = 1.0,
                     std::optional<FlatSums>* gradSums = nullptr, GradMethod method = GradMethod::Auto);
  // H·v into `out` by `method`: 'forward-over-reverse' (Hvp) or
  // 'double-backward' (GraphHvp, row by row for a block); returns L(w).
  double HvpBy(const std::string& method, const at::Tensor& x, const at::Tensor& y, const at::Tensor& v,
               at::Tensor& out, PrimalCache* cache);
  // vᵀHv into `out` by `method`: 'forward-over-forward' (Curvature) or ⟨v, Hv⟩
  // of the other two HVPs; returns L(w).
  double CurvatureBy(const std::string& method, const at::Tensor& x, const at::Tensor& y, const at::Tensor& v,
                     at::Tensor& out, PrimalCache* cache);
  // G·v into `out` for a Gauss-Newton-type curvature `kind` (gauss_newton.cc):
  // "ggn" (Jᵀ ∂²L/∂z² J), "empirical-fisher" (per-sample gradients' second
  // moment) or "mc-fisher" (the same at targets y drawn from the model, see
  // FisherTargets); v, out flat [P] or a block [K, P]; returns L(w).
  double GaussNewtonBy(const std::string& kind, const at::Tensor& x, const at::Tensor& y, const at::Tensor& v,
                       at::Tensor& out, PrimalCache* cache);
  // Targets drawn from the model's predictive distribution at outputs z, one
  // set per leading row of `noise`: cross-entropy labels by inverse CDF of
  // softmax(z) (noise uniform [M, N]), BCE 0/1 with P(1) = σ(z) (noise
  // uniform [M, ...z]), MSE z + noise/√2 (noise standard normal [M, ...z]:
  // (z − ỹ)² is the negative log-density of N(z, 1/2), so that the Fisher's
  // expectation is the GGN).
  at::Tensor FisherTargets(const at::Tensor& z, const at::Tensor& noise) const;
  // q = vᵀHv, with ∇_w q (a third derivative of the loss) written into `out`;
  // returns q. With `cache`, the gradient's graph (which does not depend on v)
  // is recorded by the first call on this batch and parameters and replayed
  // by the next ones: the 'double-backward' entry HVPs record and replay too.
  double QuadraticFormGrad(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, at::Tensor& out,
                           PrimalCache* cache = nullptr);
  // H·v into `out` by forward-over-reverse differentiation (one forward pass
  // carrying tangents, one reverse pass carrying their R{·}); returns L(w).
  // Running statistics are not touched. With `cache`, what does not depend
  // on v is recorded on the first call and replayed on later ones (see
  // PrimalCache).
  // v and out are flat [P], or [K, P] for a block of K directions (one pass
  // with the tangents batched).
  double Hvp(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, at::Tensor& out,
             PrimalCache* cache = nullptr);
  // vᵀHv (per direction: out [K] for a block v [K, P], [1] for a flat v) by
  // pushing second-order jets through the layers (Jet); returns L(w). The
  // cache records and replays as Hvp's, under its own method.
  double Curvature(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, at::Tensor& out,
                   PrimalCache* cache = nullptr);
  // H v (flat v and out) by double backward through the gradient's graph,
  // kept in `cache` between calls (PyTorch's create_graph idiom); returns L(w).
  double GraphHvp(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, at::Tensor& out, PrimalCache& cache);
  // The key a cache must match to replay for this batch and method.
  PrimalCache::Key CacheKey(const at::Tensor& x, const at::Tensor& y, const std::string& method) const;
  void CheckInput(const at::Tensor& x) const;
  void CheckTarget(const at::Tensor& y, int64_t batch) const;
  // Statistics over several passes: BeginStats, then passes with updateStats
  // gather instead of updating, then CommitStats moves the running
  // statistics once (DiscardStats: not at all).
  void BeginStats();
  void CommitStats();
  void DiscardStats();
  // Data-parallel: the gathered statistics as sums over their samples, float64
  // on the model's device, per BatchNorm layer [n, Σx (C values), Σx² (C)];
  // PoolStats replaces them by such sums over all ranks (an allreduce of
  // StatsSums), so every rank commits the statistics of the global batch.
  at::Tensor StatsSums() const;
  void PoolStats(const at::Tensor& sums);

  at::ScalarType dtype;
  c10::Device device;
  bool training = true;
  // the model's precision: the reduced type of its once-differentiated
  // passes (Undefined: none); HVPs, jets and double backward stay in dtype
  at::ScalarType reduced = at::ScalarType::Undefined;
  // the reduced types whose products were tried on this device (setPrecision
  // tries each once: an optimizer of another precision switches per step)
  std::vector<at::ScalarType> reducedChecked;
  Slots slots;
  at::Tensor flatParams, flatBuffers, counters;
  std::vector<at::Tensor> params, buffers;
  at::Generator gen;  // dropout masks

 private:
  LayerList layers_;
  bool gradRules_ = false;  // every layer has a first-order reverse rule (HaveGradRules)
  std::shared_ptr<ScriptModule> script_;
  // the module's buffer tensors (re-pointed into flatBuffers and counters)
  std::vector<at::Tensor> scriptBuffers_, scriptBufferViews_;
  // flatParams, flatBuffers and counters sized from `slots`, and the dropout generator
  void AllocateStorage(uint64_t dropoutSeed);
  // the module's forward; `autocast`: under LibTorch's autocast to `reduced`
  at::Tensor ScriptForward(const at::Tensor& x, bool updateStats, bool autocast);
  // The outputs' tangent ż, zeros of the outputs' shape (a block's [K, ...]) where nothing upstream depends on w.
  static at::Tensor OutputTangent(const Dual& z, int64_t block);
  // (∂L/∂z, R{∂L/∂z}) of the loss at the outputs z; returns L.
  double LossDual(const Dual& z, const at::Tensor& target, Dual& grad, PrimalCache* cache, int64_t block) const;
  // d²L/dt² from the outputs' jet, per direction ([K], or [] without a block); sets `loss`.
  at::Tensor LossJet(const Jet& z, const at::Tensor& target, PrimalCache* cache, int64_t block, double& loss) const;
  // What the loss's derivatives need that does not depend on v: L, ∂L/∂z and
  // (cross-entropy) softmax(z) or (BCE, Huber) the diagonal ∂²L/∂z², through the cache.
  std::vector<at::Tensor> LossPrimal(const at::Tensor& z, const at::Tensor& target, PrimalCache* cache) const;
  // The output-space term of a Gauss-Newton product: M·ż for the outputs'
  // dual z (M = ∂²L/∂z², or n·g_n g_nᵀ per sample with g = ∂L/∂z and n the
  // loss's number of terms); sets `loss`.
  at::Tensor OutputCurvature(const std::string& kind, const Dual& z, const at::Tensor& y, PrimalCache* cache,
                             int64_t block, double& loss) const;
  // GaussNewtonBy for a TorchScript module, by autograd (J·v by the double-vjp
  // trick on the kept graph of Jᵀu, then Jᵀ(M·Jv)), row by row for a block.
  double ScriptGaussNewton(const std::string& kind, const at::Tensor& x, const at::Tensor& y, const at::Tensor& v,
                           at::Tensor& out, PrimalCache& cache);
  // pass(out), or, where `out` overlaps one of `reads`, the parameters or the
  // buffers (e.g. model.params: a reverse pass writes `out` while it still
  // reads them), pass(a fresh tensor) copied into `out` at the end; returns its L.
  double IntoSeparate(at::Tensor& out, const std::vector<at::Tensor>& reads, const std::function<double(at::Tensor&)>& pass) const;
  // LossAndGrad by the layers' rules (RulesRefusal empty).
  double LossAndGradByRules(const at::Tensor& x, const at::Tensor& y, at::Tensor& grad, bool updateStats, int64_t& correct,
                            std::optional<FlatSums>* gradSums);
  // The correctly classified samples for class labels and [batch, classes] outputs, else -1.
  static int64_t CountCorrect(const at::Tensor& output, const at::Tensor& y);
  // Leaves in `cache` the graph `record` builds for `key`: recorded unless
  // the cache holds it already (then a replay); a failed recording leaves it
  // empty. Either way the calling thread's autograd order is set after the graph's.
  void KeepGraph(PrimalCache& cache, const PrimalCache::Key& key, const std::function<void()>& record) const;
  // The backward of kept per-parameter graph entries (graph[first + i] for
  // parameter i; those that do not depend on `inputs` skipped) with v split
  // like the parameters as their output gradients: ∂⟨entries, v⟩/∂inputs,
  // the graph retained; empty when no entry depends on them.
  std::vector<at::Tensor> BackwardWith(const std::vector<at::Tensor>& graph, size_t first, const at::Tensor& v,
                                       const std::vector<at::Tensor>& inputs) const;
  // A flat vector split like the parameters ([K, ...shape] views for a block [K, P]).
  std::vector<at::Tensor> SplitLikeParams(const at::Tensor& flat, int64_t block) const;
  // The frame of Hvp and Curvature: the pass over the batch in the current
  // mode with v split like the parameters, the cache readied for `method`
  // (cleared when its key changed, checked after a replay, cleared when
  // `body` throws: a half-recorded cache must not be replayed).
  double TangentPass(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, PrimalCache* cache,
                     const std::string& method, const std::function<double(DualPass&)>& body);
  // Per-parameter results copied into one flat vector; a parameter that the
  // loss does not depend on gets zeros.
  // out = the parts, flattened; returns out's sums when every part took the fused copy (CPU), else empty
  std::optional<FlatSums> WriteFlat(const std::vector<at::Tensor>& parts, at::Tensor& out) const;
  // Σ_i <parts_i, v_i> with v split like the parameters; differentiable.
  at::Tensor DotFlat(const std::vector<at::Tensor>& parts, const at::Tensor& v) const;
  // ∇L(w) with its graph kept (create_graph), for differentiating again;
  // `loss` receives L(w).
  std::vector<at::Tensor> GradientGraph(const at::Tensor& x, const at::Tensor& y, at::Tensor& loss);
  // ∇_w of the scalar `s` into `out`; zeros when s does not depend on w.
  // `retain` keeps the graph behind s for further passes.
  void WriteGradient(const at::Tensor& s, at::Tensor& out, bool retain = false) const;

  std::unique_ptr<StatsAccumulator> stats_;  // set between BeginStats and Commit/DiscardStats
  std::vector<int64_t> inputShape_;
  bool indexInput_ = false;  // the first layer is an Embedding: x holds int64 indices
  bool flatInput_ = false;   // the first layer is Flatten: x may also come flat, [batch, C·H·W]
  LossSpec loss_;
};

}  // namespace usam
