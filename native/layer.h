// The layers of a native network: the slots of the flat parameter and buffer
// storage they index into, the Layer interface (forward, forward-over-reverse
// and jet passes), and their construction from plain LayerSpecs (spec.h).
// The layers live by family in layers_linear.cc (Linear, Conv2d, Embedding),
// layers_norm.cc (BatchNorm, LayerNorm), layers_pointwise.cc (activations,
// dropout) and layers_structure.cc (pooling, flatten, identity, residual
// blocks, MakeLayers and the loops that run a list of layers).
#pragma once
#include "spec.h"
#include "tangent.h"

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

// Collects parameter and buffer slots while layers are built, in order.
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

// BatchNorm batch statistics gathered over several passes (the micro-batches
// of one step) and applied to the running statistics once: the mean and the
// unbiased variance of the whole step's data, pooled from each pass's count,
// mean and biased variance (Chan et al.), one momentum update and one
// num_batches_tracked increment, as for one batch of their concatenation.
// Gathered by BatchNorm layers (Pass::stats), applied by Network (network.cc).
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

// A layer's reverse step in a first-order pass by the layers' own rules
// (Network::LossAndGrad, method 'rules'): maps ∂L/∂y of the layer's output to
// ∂L/∂x of its input and writes the layer's parameter gradients on the way.
// RunLayersGrad runs it only while ∂L/∂y is defined, that is where y depends
// on the parameters; a layer with parameters whose input does not depend on
// them returns an undefined tensor (nothing upstream needs ∂L/∂x), which
// ends the reverse pass. A parameter-free layer's output depends on the
// parameters exactly when its input does, so its step never needs to check.
// Closures may hold references to the layer and to the GradPass: they run,
// and are dropped, within the LossAndGrad call that made them.
using GradBackward = std::function<at::Tensor(const at::Tensor& grad)>;

// The state of such a pass: the forward pass's, and the flat gradient split
// like the parameters, each part written once by its layer (Gradient marks
// it; Network zeroes a part no layer wrote).
struct GradPass {
  Pass& pass;
  std::vector<at::Tensor>& grads;
  std::vector<char>& written;
  at::Tensor& Gradient(size_t param) {
    written[param] = 1;
    return grads[param];
  }
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
  // Whether the layer has a first-order reverse rule (ForwardGrad). A network
  // whose layers all have one takes its gradients by them, with no autograd
  // graph (the engine's nodes, saved variables and the gradients' copy into
  // the flat vector cost as much as the products on a small MLP); the others
  // by autograd.
  virtual bool HasGradRule() const { return false; }
  // The forward pass of a gradient by the layer's own reverse rule: returns
  // y and sets `backward`. `upstream`: on entry whether x depends on the
  // parameters, on return whether y does. Called only where HasGradRule().
  virtual at::Tensor ForwardGrad(const at::Tensor& x, GradPass& p, bool& upstream, GradBackward& backward) const;
  // Whether the layer reads integer indices (Embedding): then it must come first.
  virtual bool TakesIndices() const { return false; }
  // Whether the layer takes an input in the pass's reduced type (bf16/fp16)
  // as it is, as torch.autocast runs it: the products, BatchNorm (float32
  // statistics over a reduced input), the activations, pooling and the
  // structural layers. The others get their input back in float32 from
  // RunLayers: LayerNorm (on autocast's float32 list), dropout (so that its
  // masks are float32's).
  virtual bool TakesReduced() const { return false; }
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

using LayerList = std::vector<std::unique_ptr<Layer>>;

// The layers of `specs`, their parameters and buffers added to `slots` in
// order under PyTorch's state_dict names (`prefix` + index + "." + name).
LayerList MakeLayers(const std::vector<LayerSpec>& specs, const std::string& prefix, Slots& slots);

// Runs `layers` in order; a LibTorch error names the layer that raised it.
at::Tensor RunLayers(const LayerList& layers, at::Tensor x, Pass& p);
// The same with tangents; `backward` runs the layers' reverse steps in reverse.
Dual RunLayersDual(const LayerList& layers, Dual x, DualPass& p, DualBackward& backward);
// The same with second-order jets.
Jet RunLayersJet(const LayerList& layers, Jet x, DualPass& p);
// The same by the layers' first-order reverse rules (each HasGradRule).
at::Tensor RunLayersGrad(const LayerList& layers, at::Tensor x, GradPass& p, bool& upstream, GradBackward& backward);
// Whether every layer of `layers` has a first-order reverse rule.
bool HaveGradRules(const LayerList& layers);

// Each family's layers, for MakeLayers; `prefix` names their parameters.
std::unique_ptr<Layer> MakeLinearLayer(const LayerSpec& s, const std::string& prefix, Slots& slots);
std::unique_ptr<Layer> MakeNormLayer(const LayerSpec& s, const std::string& prefix, Slots& slots);
std::unique_ptr<Layer> MakePointwiseLayer(const LayerSpec& s);

// A 4-D [N, C, H, W] input, or an error naming the layer.
void CheckImages(const std::string& where, const at::Tensor& x);

}  // namespace usam
