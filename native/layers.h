// The network behind a model: layers parsed from a spec, the flat parameter
// and buffer storage they index into, the forward pass and the loss.
#pragma once
#include "errors.h"
#include "script.h"

namespace usam {

struct ParamSlot {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0, numel = 0;
  double bound = 0;  // U(-bound, bound) init; bound 0 means constant `fill`
  double fill = 0;
  double stddev = 0;  // > 0: N(0, stddev²) init instead (Embedding)
};

struct BufferSlot {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0, numel = 0;
  double fill = 0;
};

// Collects parameter and buffer slots while layers are parsed, in order.
struct Slots {
  std::vector<ParamSlot> params;
  std::vector<BufferSlot> buffers;
  std::vector<std::string> counters;  // BatchNorm num_batches_tracked
  int64_t paramCount = 0, bufferCount = 0;
  size_t AddParam(std::string name, std::vector<int64_t> shape, double bound, double fill);
  size_t AddNormalParam(std::string name, std::vector<int64_t> shape, double stddev);
  size_t AddBuffer(std::string name, std::vector<int64_t> shape, double fill);
  size_t AddCounter(std::string name);
};

// The state one forward pass sees.
// BatchNorm batch statistics gathered over several passes (the micro-batches
// of one step) and applied to the running statistics once: the mean and the
// unbiased variance of the whole step's data, pooled from each pass's count,
// mean and biased variance (Chan et al.), one momentum update and one
// num_batches_tracked increment, as for one batch of their concatenation.
struct BatchStats {
  int64_t count = 0;
  at::Tensor mean, m2;  // per channel, float64: running mean and sum of squared deviations
};
struct StatsAccumulator {
  struct Entry {
    size_t meanBuffer, varBuffer, counter;
    double momentum;
    BatchStats stats;
  };
  std::vector<Entry> entries;
  void Add(size_t meanBuffer, size_t varBuffer, size_t counter, double momentum, const at::Tensor& x);
};

struct Pass {
  const std::vector<at::Tensor>& params;   // leaf views of the flat parameters
  const std::vector<at::Tensor>& buffers;  // views of the flat buffers
  at::Tensor& counters;
  bool training;
  bool updateStats;          // BatchNorm running statistics move in this pass
  bool twiceDifferentiable;  // avoid kernels without double backward (cuDNN BN)
  at::Generator& gen;
  // When set (and updateStats), BatchNorm gathers its batch statistics here
  // instead of moving the running statistics; Network::CommitStats applies them.
  StatsAccumulator* stats = nullptr;
};

// A value and its directional derivative along the parameter direction v
// (Pearlmutter's R{·} operator). An undefined tangent means the value does
// not depend on the parameters (the network's input).
struct Dual {
  at::Tensor value, tangent;
};

// A value and its first two derivatives along the line t ↦ w + t·v at t = 0
// (a second-order Taylor jet, forward-over-forward). Undefined derivatives are
// zero (the network's input). Pushed through the layers to the loss it gives
// vᵀHv = d²L(w + t·v)/dt² with no reverse pass: about half the matrix work of
// an HVP (a first layer takes one product instead of two, a later linear
// layer four instead of six), which is what a trace probe needs.
struct Jet {
  at::Tensor value, d1, d2;
};

// A layer's reverse step in a forward-over-reverse HVP: maps (∂L/∂y, R{∂L/∂y})
// of the layer's output to those of its input and writes the layer's blocks
// of H·v on the way. Returns an undefined Dual when the input does not
// depend on the parameters (nothing upstream needs it). Closures may hold
// references to the layer and to the DualPass: they run, and are dropped,
// within the Network::Hvp call that made them.
using DualBackward = std::function<Dual(const Dual& grad)>;

// What an HVP computes that does not depend on v, kept for the next HVP on
// the same batch and parameters (a probe applies one H to many vectors):
// - forward-over-reverse: the primal activations and the loss gradient at
//   every layer, activation slopes, pooling indices, dropout masks; the first
//   pass records them, later passes replay them and run only the tangent
//   arithmetic. Entries are consumed in call order, the same in every pass
//   over one network. (BatchNorm's fused kernels compute primal and tangent
//   together and are not split.)
// - double backward: the gradient with its autograd graph (PyTorch's
//   create_graph idiom); each HVP is one backward pass of that graph.
// `key` names what the entries were computed from; Network::Hvp drops them
// when any of it changed (another model, batch, mode, or an in-place write to
// the parameters, buffers or batch, seen by LibTorch's version counters).
struct PrimalCache {
  struct Key {
    const void* network = nullptr;
    const void *x = nullptr, *y = nullptr;
    // BatchNorm's kernel moves the running statistics without a version bump;
    // every such move also counts num_batches_tracked, which does bump
    int64_t xVersion = -1, yVersion = -1, paramsVersion = -1, buffersVersion = -1, countersVersion = -1;
    bool training = false;
    std::string method;
    bool operator==(const Key& o) const {
      return network == o.network && x == o.x && y == o.y && xVersion == o.xVersion && yVersion == o.yVersion &&
             paramsVersion == o.paramsVersion && buffersVersion == o.buffersVersion &&
             countersVersion == o.countersVersion && training == o.training &&
             method == o.method;
    }
  };
  Key key;
  bool replaying = false;
  size_t cursor = 0;
  std::vector<std::vector<at::Tensor>> entries;
  std::vector<at::Tensor> graph;  // double backward: ∇L with its graph
  at::Tensor loss;
  int64_t records = 0, replays = 0;

  // compute() while recording (kept), its recorded result while replaying.
  std::vector<at::Tensor> Next(const std::function<std::vector<at::Tensor>()>& compute);
  void Clear();
  // Bytes held: distinct storages of the entries, counted once. The graph's
  // saved tensors are not reachable from here and are not counted.
  int64_t Bytes() const;
};

// The state of one forward-over-reverse pass: the forward pass's state, the
// direction v and the output H·v, both split like the parameters; `cache`,
// when set, records or replays the parts that do not depend on v. A jet pass
// (Layer::ForwardJet) uses the same state and leaves `hv` alone.
struct DualPass {
  Pass& pass;
  const std::vector<at::Tensor>& v;
  std::vector<at::Tensor>& hv;
  PrimalCache* cache = nullptr;
  // K > 0: a block of K directions at once. v, hv and every tangent carry a
  // leading dimension of K; primal values do not (they are shared).
  int64_t block = 0;
};

class Layer {
 public:
  explicit Layer(std::string where) : where_(std::move(where)) {}
  virtual ~Layer() = default;
  virtual at::Tensor Forward(const at::Tensor& x, Pass& p) const = 0;
  // The forward pass with tangents: returns (y, R{y}) and sets `backward`.
  virtual Dual ForwardDual(const Dual& x, DualPass& p, DualBackward& backward) const = 0;
  // The forward pass with second-order jets along v: (y, ẏ, ÿ).
  virtual Jet ForwardJet(const Jet& x, DualPass& p) const = 0;
  // Whether the layer reads integer indices (Embedding): then it must come first.
  virtual bool TakesIndices() const { return false; }
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

using LayerList = std::vector<std::unique_ptr<Layer>>;

enum class LossKind { CrossEntropy, Mse };

class Network {
 public:
  // Two streams: one initialises the parameters, the other (kept as `gen`)
  // draws dropout masks, so masks never replay the words that made w₀.
  Network(const Napi::Object& spec, at::ScalarType dtype, c10::Device device, uint64_t initSeed, uint64_t dropoutSeed);
  // A TorchScript module as the network: its parameters and buffers are
  // re-pointed into the flat storage (converted to `dtype`), `loss` is
  // {type: 'cross-entropy' | 'mse', labelSmoothing?} or undefined.
  Network(std::shared_ptr<ScriptModule> script, const Napi::Value& loss, at::ScalarType dtype, c10::Device device,
          uint64_t dropoutSeed);
  // Whether the network is a TorchScript module: HVPs by double backward only.
  bool IsScript() const { return script_ != nullptr; }

  at::Tensor Forward(const at::Tensor& x, bool updateStats, bool twiceDifferentiable);
  at::Tensor Loss(const at::Tensor& output, const at::Tensor& target) const;
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
  Slots slots;
  at::Tensor flatParams, flatBuffers, counters;
  std::vector<at::Tensor> params, buffers;
  at::Generator gen;  // dropout masks

 private:
  LayerList layers_;
  std::shared_ptr<ScriptModule> script_;
  // the module's buffer tensors (re-pointed into flatBuffers and counters)
  std::vector<at::Tensor> scriptBuffers_, scriptBufferViews_;
  void ParseLoss(const Napi::Value& loss, const std::string& where);
  // flatParams, flatBuffers and counters sized from `slots`, and the dropout generator
  void AllocateStorage(uint64_t dropoutSeed);
  at::Tensor ScriptForward(const at::Tensor& x, bool updateStats);
  // (∂L/∂z, R{∂L/∂z}) of the loss at the outputs z; returns L.
  double LossDual(const Dual& z, const at::Tensor& target, Dual& grad, PrimalCache* cache, int64_t block) const;
  // d²L/dt² from the outputs' jet, per direction ([K], or [] without a block); sets `loss`.
  at::Tensor LossJet(const Jet& z, const at::Tensor& target, PrimalCache* cache, int64_t block, double& loss) const;
  // What the loss's derivatives need that does not depend on v: L, ∂L/∂z and
  // (cross-entropy) softmax(z), through the cache.
  std::vector<at::Tensor> LossPrimal(const at::Tensor& z, const at::Tensor& target, PrimalCache* cache) const;
  // A flat vector split like the parameters ([K, ...shape] views for a block [K, P]).
  std::vector<at::Tensor> SplitLikeParams(const at::Tensor& flat, int64_t block) const;
  // The frame of Hvp and Curvature: the pass over the batch in the current
  // mode with v split like the parameters, the cache readied for `method`
  // (cleared when its key changed, checked after a replay, cleared when
  // `body` throws: a half-recorded cache must not be replayed).
  double TangentPass(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, PrimalCache* cache,
                     const std::string& method, const std::function<double(DualPass&)>& body);

  std::unique_ptr<StatsAccumulator> stats_;  // set between BeginStats and Commit/DiscardStats
  std::vector<int64_t> inputShape_;
  bool indexInput_ = false;  // the first layer is an Embedding: x holds int64 indices
  LossKind loss_ = LossKind::CrossEntropy;
  double labelSmoothing_ = 0;
};

// Runs `layers` in order; a LibTorch error names the layer that raised it.
at::Tensor RunLayers(const LayerList& layers, at::Tensor x, Pass& p);
// The same with tangents; `backward` runs the layers' reverse steps in reverse.
Dual RunLayersDual(const LayerList& layers, Dual x, DualPass& p, DualBackward& backward);
// The same with second-order jets.
Jet RunLayersJet(const LayerList& layers, Jet x, DualPass& p);

}  // namespace usam
