// The tangent and jet algebra the layers' derivative passes are written in:
// the state of a pass, values with their directional derivatives (Dual, Jet),
// the cache of what does not depend on the direction (PrimalCache), the
// shared rules (parameter-free linear maps, normalisation, affine maps) and
// the matrix products behind them (ProductInto, routed to oneDNN's sgemm on
// Debian's LibTorch). Implemented in tangent.cc.
#pragma once
#include "core.h"

#include <signal.h>

namespace usam {

struct StatsAccumulator;  // layer.h

// The state one forward pass sees.
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
  // Mixed precision (the model's precision), as torch.autocast: when defined
  // (bf16, fp16), the layers linear in their parameters (Linear, Conv2d)
  // take their products in this type and hand back their output in it; the
  // layers that take it (Layer::TakesReduced: BatchNorm, activations,
  // pooling...) run on it, RunLayers hands the others float32, and
  // Network::Forward hands the loss float32 logits. Casting back after every
  // product instead cost 3x on ResNet-18 (LibTorch 1.13, one thread: the
  // float32 BatchNorm, ReLU and casts of every activation).
  at::ScalarType reduced = at::ScalarType::Undefined;
};

// f's products in the pass's reduced type (callers check that it has one):
// the operands rounded to it (a no-op for an input already in it), the
// result left in it; autograd carries the casts, so the gradients come back
// in the parameters' type.
template <typename F>
at::Tensor InPassPrecision(const Pass& p, F&& f) {
  auto cast = [&](const at::Tensor& t) { return t.defined() ? t.to(p.reduced) : t; };
  return f(cast);
}

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
  uint64_t graphSequence = 0;     // the recording thread's autograd sequence number after the graph's nodes (KeepGraph)
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

// A value that does not depend on v: computed by f, or recorded and
// replayed through the pass's cache (PrimalCache).
template <typename F>
at::Tensor Primal(DualPass& p, F&& f) {
  if (!p.cache) return f();
  return p.cache->Next([&] { return std::vector<at::Tensor>{f()}; })[0];
}
// The same for two values (a pair or a tuple).
template <typename F>
std::pair<at::Tensor, at::Tensor> Primal2(DualPass& p, F&& f) {
  if (!p.cache) {
    auto r = f();
    return {std::get<0>(r), std::get<1>(r)};
  }
  auto e = p.cache->Next([&] {
    auto r = f();
    return std::vector<at::Tensor>{std::get<0>(r), std::get<1>(r)};
  });
  return {e[0], e[1]};
}

// a + b, where an undefined tensor stands for zero.
at::Tensor Plus(const at::Tensor& a, const at::Tensor& b);

// Block mode: a tangent [K, N, ...] folded to [K·N, ...] for per-sample
// maps (pooling, convolutions with the layer's own weight), and back.
at::Tensor Fold(const at::Tensor& t, const DualPass& p);
at::Tensor Unfold(const at::Tensor& t, const DualPass& p);
// The shape of a tangent of a value of shape `shape`.
std::vector<int64_t> TangentShape(std::vector<int64_t> shape, const DualPass& p);

// The reverse step of a layer whose input does not depend on the parameters
// and which has no parameters itself: nothing to propagate.
Dual NothingUpstream(const Dual&);
// The reverse step of an identity map of x.
DualBackward IdentityBackward(const Dual& x);

// out = a·b, or out += a·b, for a [M, K] and b [K, N] (each row-major or the
// transpose of a row-major view) or a block of them [B, ·, ·] (a shared 2-D
// operand broadcast); out contiguous. Float32 CPU products go to oneDNN's
// sgemm where this process calls it (DnnlSgemm; see tangent.cc).
void ProductInto(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool accumulate);

// Whether this process calls oneDNN's sgemm directly: builds against a 1.x
// LibTorch with the system's libdnnl (USAM_DNNL_SGEMM at build time); other
// builds when the environment variable USAM_DNNL_SGEMM=1 is set and the
// system's libdnnl.so.2 loads (those at one intra-op thread only).
bool DnnlSgemm();
// Whether ProductInto calls it now (DnnlSgemm, and for the latter builds one intra-op thread).
bool DnnlSgemmNow();

// Holds this thread's signals (blocked, delivered at the end) while a pass
// runs, in builds that call oneDNN's sgemm directly, whose kernels a handled
// signal can corrupt (tangent.cc says why); elsewhere nothing. Scopes nest:
// only the outermost blocks and restores.
class PassSignals {
 public:
  PassSignals();
  ~PassSignals();
  PassSignals(const PassSignals&) = delete;
  PassSignals& operator=(const PassSignals&) = delete;

 private:
  bool active_;
  sigset_t saved_;
};
// a·b into a new tensor, and out += a·b, by ProductInto.
at::Tensor Product(const at::Tensor& a, const at::Tensor& b);
void AddProduct(at::Tensor& out, const at::Tensor& a, const at::Tensor& b);
// x Wᵀ + bias (the bias broadcast over the rows), as at::linear.
at::Tensor Affine(const at::Tensor& x2, const at::Tensor& w, const at::Tensor& bias);

// Tangent and reverse step of a parameter-free linear map f: R{y} = f(ẋ),
// and the reverse step applies the vector-Jacobian product of f (taken from
// autograd on a one-op graph; f is linear, so it does not depend on x) to
// both the gradient and its tangent.
Dual LinearMapDual(const Dual& x, DualPass& p, const std::function<at::Tensor(const at::Tensor&)>& f,
                   DualBackward& backward);
// A jet through a parameter-free linear map f (pooling): every order is f of
// the same order.
Jet LinearMapJet(const Jet& x, DualPass& p, const std::function<at::Tensor(const at::Tensor&)>& f);
// A jet through an elementwise product with a constant (dropout's mask, ReLU's slope as a mask).
Jet ScaledJet(const at::Tensor& y, const Jet& x, const std::function<at::Tensor(const at::Tensor&)>& scale);

// The jet of a normalisation x̂ = c·r, c = x − m(x), r = (m(c²) + ε)^(−1/2),
// from the primal x̂, c and r (cached: they do not depend on v); m(·) is the
// mean over `tdims` of a tangent (a value's dims, shifted past a block's
// leading K):
//   ċ = ẋ − m(ẋ), ṡ = 2 m(c ċ), ṙ = −½ r³ ṡ, x̂' = ċ r + c ṙ;
//   c̈ = ẍ − m(ẍ), s̈ = 2 m(ċ² + c c̈), r̈ = ¾ r⁵ ṡ² − ½ r³ s̈,
//   x̂'' = c̈ r + 2 ċ ṙ + c r̈.
Jet NormalizedJet(const at::Tensor& xh, const at::Tensor& c, const at::Tensor& r, const Jet& x, at::IntArrayRef tdims);
// y = γ x̂ + β along v: ẏ = v_γ x̂ + γ x̂' + v_β, ÿ = 2 v_γ x̂' + γ x̂''; γ, β
// and their tangents shaped to broadcast against x̂ and its derivatives.
Jet AffineJet(const at::Tensor& y, const Jet& xh, const at::Tensor& gamma, const at::Tensor& vgamma,
              const at::Tensor& vbeta);

}  // namespace usam
