// The loss of a Network and its derivatives (network.h): the gradient,
// H·v by forward-over-reverse passes through the layers (Hvp) or by double
// backward through autograd's graph of the gradient (GraphHvp), vᵀHv by
// second-order jets (Curvature), and ∇(vᵀHv) (QuadraticFormGrad). Every entry
// runs on whichever thread the caller chose (model.cc: the JS thread or
// libuv's pool) and never touches JavaScript.
#include "fused.h"
#include "math_attention.h"
#include "network.h"

#include <ATen/SequenceNumber.h>
#include <mutex>

namespace usam {

namespace ag = torch::autograd;

namespace {
// g[i, y_i] −= c for each row i of g [N, C] (y int64 labels, checked): a
// loop over the N labels on the CPU, where scatter_add_ cost a TensorIterator.
void SubtractAtLabels(at::Tensor& g, const at::Tensor& y, double c) {
  if (g.device().is_cpu() && g.is_contiguous() && y.is_contiguous() && (g.scalar_type() == at::kFloat || g.scalar_type() == at::kDouble)) {
    const int64_t* labels = y.data_ptr<int64_t>();
    const int64_t rows = g.size(0), classes = g.size(1);
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "SubtractAtLabels", [&] {
      scalar_t* out = g.data_ptr<scalar_t>();
      for (int64_t i = 0; i < rows; ++i) out[i * classes + labels[i]] -= static_cast<scalar_t>(c);
    });
    return;
  }
  g.scatter_add_(1, y.view({-1, 1}), at::full({g.size(0), 1}, -c, g.options()));
}

// The rows of `output` [N, C] whose argmax (the first maximum; a NaN counts
// as the maximum, as at::argmax) is the row's label.
template <typename T>
int64_t CorrectRows(const T* out, const int64_t* labels, int64_t rows, int64_t classes) {
  int64_t correct = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const T* row = out + i * classes;
    int64_t best = 0;
    for (int64_t k = 1; k < classes && !std::isnan(row[best]); ++k)
      if (row[k] > row[best] || std::isnan(row[k])) best = k;
    correct += best == labels[i];
  }
  return correct;
}
}  // namespace

PrimalCache::Key Network::CacheKey(const at::Tensor& x, const at::Tensor& y, const std::string& method) const {
  PrimalCache::Key k;
  k.network = this;
  k.x = x.unsafeGetTensorImpl(), k.y = y.unsafeGetTensorImpl();
  k.xVersion = static_cast<int64_t>(x._version()), k.yVersion = static_cast<int64_t>(y._version());
  k.paramsVersion = static_cast<int64_t>(flatParams._version());
  k.buffersVersion = static_cast<int64_t>(flatBuffers._version());
  k.countersVersion = static_cast<int64_t>(counters._version());
  k.training = training;
  k.method = method;
  return k;
}

std::vector<at::Tensor> Network::SplitLikeParams(const at::Tensor& flat, int64_t block) const {
  // a block [K, P]: each part a [K, ...shape] view (the rows are strided by P)
  std::vector<at::Tensor> parts;
  for (const auto& s : slots.params) {
    std::vector<int64_t> shape = s.shape;
    if (block) shape.insert(shape.begin(), block);
    parts.push_back(flat.narrow(flat.dim() - 1, s.offset, s.numel).view(shape));
  }
  return parts;
}

double Network::TangentPass(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, PrimalCache* cache,
                            const std::string& method, const std::function<double(DualPass&)>& body) {
  if (script_)
    Fail("a TorchScript model has no " + method + " rules (its layers are not this library's); use method 'double-backward'");
  at::NoGradGuard ng;
  if (cache) {
    PrimalCache::Key key = CacheKey(x, y, method);
    if (!(cache->key == key)) {
      cache->Clear();
      cache->key = key;
    }
    cache->cursor = 0;
  }
  Pass pass{params, buffers, counters, training, /*updateStats=*/false, /*twiceDifferentiable=*/false, gen};
  const int64_t block = v.dim() == 2 ? v.size(0) : 0;
  std::vector<at::Tensor> vParts = SplitLikeParams(v, block), hvParts;
  DualPass state{pass, vParts, hvParts, cache, block};
  try {
    double loss = body(state);
    if (cache) {
      if (cache->replaying && cache->cursor != cache->entries.size())
        Fail("internal error: a pass replayed less of its cache than it recorded");
      ++(cache->replaying ? cache->replays : cache->records);
      cache->replaying = true;
    }
    return loss;
  } catch (...) {
    if (cache) cache->Clear();
    throw;
  }
}

double Network::Hvp(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, at::Tensor& out, PrimalCache* cache) {
  return TangentPass(x, y, v, cache, "forward-over-reverse", [&](DualPass& dual) {
    dual.hv = SplitLikeParams(out, dual.block);
    DualBackward backward;
    Dual z = RunLayersDual(layers_, {x, {}}, dual, backward);
    Dual g;
    double loss = LossDual(z, y, g, cache, dual.block);
    backward(g);
    return loss;
  });
}

double Network::Curvature(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, at::Tensor& out,
                          PrimalCache* cache) {
  return TangentPass(x, y, v, cache, "forward-over-forward", [&](DualPass& jets) {
    Jet z = RunLayersJet(layers_, {x, {}, {}}, jets);
    double loss = 0;
    out.copy_(LossJet(z, y, cache, jets.block, loss).reshape(out.sizes()));
    return loss;
  });
}

// The losses' derivatives in the outputs z, each with PyTorch's mean
// reduction (N samples, n elements of z); L(z + tż) differentiated in t gives
// R{∂L/∂z} (forward-over-reverse) and d²L/dt² (jets).
//
// Cross-entropy with label smoothing ε over C classes:
//   ∂L/∂z = (softmax(z) − q)/N with q = (1−ε)·onehot + ε/C, and
//   R{∂L/∂z} = p ⊙ (ż − ⟨p, ż⟩)/N per sample (p = softmax(z)).
// NLL on log-probabilities, L = −(1/N) Σ_i z[i, y_i]: linear in z,
//   ∂L/∂z = −onehot/N; the second and third derivatives are 0, R{∂L/∂z} = 0.
// The elementwise losses, L = (1/n) Σ ℓ(z, t) over the n elements, have a
// diagonal ∂²L/∂z² = ℓ''/n, so R{∂L/∂z} = ℓ'' ⊙ ż / n; with r = z − t:
//   MSE: ℓ = r², ℓ' = 2r, ℓ'' = 2, ℓ''' = 0.
//   BCE with logits: ℓ = softplus(z) − t·z (= max(z, 0) − t·z + log(1 + e^{−|z|}),
//     as PyTorch computes it), with s = σ(z): ℓ' = s − t, ℓ'' = s(1 − s),
//     ℓ''' = s(1 − s)(1 − 2s).
//   Huber with δ > 0: ℓ = r²/2 for |r| < δ, δ(|r| − δ/2) otherwise;
//     ℓ' = clamp(r, −δ, δ), ℓ'' = 1{|r| < δ}, ℓ''' = 0. At the kink |r| = δ,
//     ℓ'' = 0 here as in PyTorch's autograd (huber_loss_double_backward
//     multiplies by |r| < δ, strictly); ℓ' is continuous there.
// The third derivatives are autograd's, through QuadraticFormGrad.
//
// LossPrimal returns {L, ∂L/∂z} and, where the second derivative needs it,
// softmax(z) (cross-entropy) or the diagonal ℓ''/n (BCE, Huber).
std::vector<at::Tensor> Network::LossPrimal(const at::Tensor& z, const at::Tensor& y, PrimalCache* cache) const {
  // through the cache, as the layers' v-independent parts (Primal)
  auto primal = [&](const std::function<std::vector<at::Tensor>()>& f) { return cache ? cache->Next(f) : f(); };
  const double n = static_cast<double>(z.numel());
  switch (loss_.kind) {
    case LossKind::Mse:
      return primal([&] { return std::vector<at::Tensor>{Loss(z, y), (z - y) * (2.0 / n)}; });
    case LossKind::BceWithLogits:
      return primal([&] {
        at::Tensor loss = Loss(z, y);  // also checks the targets' shape
        at::Tensor s = at::sigmoid(z);
        return std::vector<at::Tensor>{loss, (s - y).div_(n), (s * (1 - s)).div_(n)};
      });
    case LossKind::Huber:
      return primal([&] {
        at::Tensor loss = Loss(z, y);
        at::Tensor r = z - y;
        at::Tensor inside = r.abs().lt(loss_.delta).to(z.scalar_type());
        return std::vector<at::Tensor>{loss, r.clamp(-loss_.delta, loss_.delta).div_(n), inside.div_(n)};
      });
    case LossKind::Nll:
      return primal([&] {
        at::Tensor loss = Loss(z, y);  // also checks shapes and labels
        at::Tensor g = at::zeros_like(z);
        g.scatter_(1, y.view({-1, 1}), -1.0 / static_cast<double>(z.size(0)));
        return std::vector<at::Tensor>{loss, g};
      });
    case LossKind::CrossEntropy:
      break;
  }
  return primal([&] {
    at::Tensor logp;
    at::Tensor loss = LossWith(z, y, &logp);  // also checks shapes and labels
    const double batch = static_cast<double>(z.size(0)), classes = static_cast<double>(z.size(1));
    // softmax(z) as exp of the loss's log_softmax(z): ATen's softmax over ten
    // classes took 14 µs of a 330 µs forward-backward of the tiny MLP, exp 2 µs
    at::Tensor p = logp.exp();
    const double eps = loss_.labelSmoothing;
    at::Tensor g = eps > 0 ? (p - eps / classes).div_(batch) : p.div(batch);
    SubtractAtLabels(g, y, (1.0 - eps) / batch);
    return std::vector<at::Tensor>{loss, g, p};
  });
}

at::Tensor Network::OutputTangent(const Dual& z, int64_t block) {
  if (z.tangent.defined()) return z.tangent;
  std::vector<int64_t> shape = z.value.sizes().vec();
  if (block) shape.insert(shape.begin(), block);
  return at::zeros(shape, z.value.options());
}

double Network::LossDual(const Dual& z, const at::Tensor& y, Dual& grad, PrimalCache* cache, int64_t block) const {
  at::Tensor zt = OutputTangent(z, block);
  auto lg = LossPrimal(z.value, y, cache);
  double loss = lg[0].item<double>();
  switch (loss_.kind) {
    case LossKind::Mse:
      grad = {lg[1], zt * (2.0 / static_cast<double>(z.value.numel()))};
      return loss;
    case LossKind::Nll:
      grad = {lg[1], at::zeros_like(zt)};
      return loss;
    case LossKind::BceWithLogits:
    case LossKind::Huber:
      grad = {lg[1], lg[2] * zt};  // ℓ''/n ⊙ ż, broadcast over a block's leading dim
      return loss;
    case LossKind::CrossEntropy:
      break;
  }
  const at::Tensor& p = lg[2];
  at::Tensor gt = p * (zt - (p * zt).sum(-1, /*keepdim=*/true));  // classes last, with or without a block
  grad = {lg[1], gt.div_(static_cast<double>(z.value.size(0)))};
  return loss;
}

// d²L/dt² = Σ ż ∂²L/∂z² ż + ⟨∂L/∂z, z̈⟩: for cross-entropy, per sample
// żᵀ(diag p − ppᵀ)ż / N (label smoothing changes only ∂L/∂z); for NLL 0;
// for the elementwise losses Σ ℓ'' ż² / n (MSE: 2 Σ ż² / n).
at::Tensor Network::LossJet(const Jet& z, const at::Tensor& y, PrimalCache* cache, int64_t block, double& loss) const {
  auto lg = LossPrimal(z.value, y, cache);
  loss = lg[0].item<double>();
  // a sum over everything but a block's leading dim
  auto total = [block](const at::Tensor& t) { return block ? t.flatten(1).sum(1) : t.sum(); };
  at::Tensor q = block ? at::zeros({block}, z.value.options()) : at::zeros({}, z.value.options());
  if (z.d1.defined()) {
    const at::Tensor& zt = z.d1;
    switch (loss_.kind) {
      case LossKind::Mse:
        q = total(zt * zt).mul_(2.0 / static_cast<double>(z.value.numel()));
        break;
      case LossKind::Nll:
        break;
      case LossKind::BceWithLogits:
      case LossKind::Huber:
        q = total(lg[2] * zt * zt);
        break;
      case LossKind::CrossEntropy: {
        at::Tensor pz = lg[2] * zt;
        at::Tensor mean = pz.sum(-1);  // ⟨p, ż⟩ per sample
        q = total((pz * zt).sum(-1) - mean * mean).div_(static_cast<double>(z.value.size(0)));
        break;
      }
    }
  }
  if (z.d2.defined()) q.add_(total(lg[1] * z.d2));
  return q;
}

at::Tensor Network::Loss(const at::Tensor& out, const at::Tensor& y) const { return LossWith(out, y, nullptr); }

at::Tensor Network::LossWith(const at::Tensor& out, const at::Tensor& y, at::Tensor* logProbs) const {
  const std::string name = LossName(loss_.kind);
  if (!TakesLabels(loss_.kind)) {
    if (out.sizes() != y.sizes())
      Fail("argument 'y' has shape " + c10::str(y.sizes()) + " but the model outputs " + c10::str(out.sizes()) + "; " +
           name + " needs float targets of the output's shape");
    if (loss_.kind == LossKind::BceWithLogits)
      return at::binary_cross_entropy_with_logits(out, y, {}, {}, at::Reduction::Mean);
    if (loss_.kind == LossKind::Huber) return at::huber_loss(out, y, at::Reduction::Mean, loss_.delta);
    return at::mse_loss(out, y);
  }
  if (out.dim() != 2) Fail(name + " needs [batch, classes] outputs, the model gives " + c10::str(out.sizes()));
  int64_t classes = out.size(1);
  // Labels are checked on the host: an out-of-range label would be a device
  // assert on CUDA, which kills the CUDA context.
  auto range = at::aminmax(y);
  int64_t lo = std::get<0>(range).item<int64_t>(), hi = std::get<1>(range).item<int64_t>();
  if (lo < 0 || hi >= classes)
    Fail("argument 'y' holds label " + std::to_string(lo < 0 ? lo : hi) + " but the model has " +
         std::to_string(classes) + " classes (labels 0.." + std::to_string(classes - 1) + ")");
  // NLL reads the outputs as they are, as log-probabilities (e.g. a log-softmax's)
  if (loss_.kind == LossKind::Nll) return at::nll_loss(out, y);
  at::Tensor logp = at::log_softmax(out, 1);
  if (logProbs) *logProbs = logp;
  at::Tensor nll = at::nll_loss(logp, y);
  if (loss_.labelSmoothing == 0) return nll;
  // PyTorch's label smoothing: (1-ε)·NLL + ε·mean over classes of −log p.
  return nll * (1.0 - loss_.labelSmoothing) - logp.mean(1).mean() * loss_.labelSmoothing;
}

at::Tensor Network::LossOf(const at::Tensor& x, const at::Tensor& y, bool updateStats, bool twice, at::Tensor* output) {
  at::Tensor out = Forward(x, updateStats, twice);
  if (output) *output = out;
  return Loss(out, y);
}

std::optional<FlatSums> Network::WriteFlat(const std::vector<at::Tensor>& parts, at::Tensor& out) const {
  at::NoGradGuard ng;
  const auto& ps = slots.params;
  // the sum of what is written comes with the copy (one fused loop a part on
  // the CPU): the optimizer's NaN/Inf check of a gradient, with no pass of its own
  std::optional<FlatSums> total = FlatSums{};
  for (size_t i = 0; i < ps.size(); ++i) {
    at::Tensor dst = out.narrow(0, ps[i].offset, ps[i].numel);
    FlatSums sums;
    if (!parts[i].defined()) {
      dst.zero_();
    } else if (FusedCopySum(dst, parts[i], sums)) {
      if (total) {
        total->sum += sums.sum;
        total->squares += sums.squares;
      }
    } else {
      dst.copy_(parts[i].reshape(-1));
      total.reset();
    }
  }
  return total;
}

at::Tensor Network::DotFlat(const std::vector<at::Tensor>& parts, const at::Tensor& v) const {
  const auto& ps = slots.params;
  at::Tensor total;
  for (size_t i = 0; i < ps.size(); ++i) {
    if (!parts[i].defined()) continue;
    at::Tensor term = (parts[i] * v.narrow(0, ps[i].offset, ps[i].numel).view(ps[i].shape)).sum();
    total = total.defined() ? total + term : term;
  }
  return total.defined() ? total : at::zeros({}, v.options());
}


std::vector<at::Tensor> Network::GradientGraph(const at::Tensor& x, const at::Tensor& y, at::Tensor& loss) {
  MathAttention twice;  // this graph is differentiated again
  loss = LossOf(x, y, false, true);
  return ag::grad({loss}, params, {}, true, /*create_graph=*/true, true);
}

void Network::WriteGradient(const at::Tensor& s, at::Tensor& out, bool retain) const {
  if (s.requires_grad())
    WriteFlat(ag::grad({s}, params, {}, retain, false, true), out);
  else
    out.zero_();
}

std::string Network::RulesRefusal(double lossScale) const {
  if (script_) return "a TorchScript model has no first-order rules of this library's layers";
  if (!gradRules_) return "a layer of this model has no first-order rule (only linear, the activations, dropout, flatten, identity and residual blocks of them do)";
  if (reduced != at::ScalarType::Undefined) return "mixed precision (the model's precision " + DTypeName(reduced) + ") runs its products under autocast";
  if (lossScale != 1.0) return "a loss scale differentiates S·L";
  return "";
}

int64_t Network::CountCorrect(const at::Tensor& output, const at::Tensor& y) {
  if (y.scalar_type() != at::kLong || output.dim() != 2) return -1;
  at::NoGradGuard ng;
  // a loop on the CPU: argmax, eq, sum and item were four ops for 128 × 10 numbers
  if (output.device().is_cpu() && output.is_contiguous() && y.is_contiguous() && y.numel() == output.size(0)) {
    if (output.scalar_type() == at::kFloat) return CorrectRows(output.data_ptr<float>(), y.data_ptr<int64_t>(), output.size(0), output.size(1));
    if (output.scalar_type() == at::kDouble) return CorrectRows(output.data_ptr<double>(), y.data_ptr<int64_t>(), output.size(0), output.size(1));
  }
  return output.argmax(1).eq(y).sum().item<int64_t>();
}

double Network::LossAndGrad(const at::Tensor& x, const at::Tensor& y, at::Tensor& grad, bool updateStats,
                            int64_t& correct, double lossScale, std::optional<FlatSums>* gradSums, GradMethod method) {
  if (method != GradMethod::Autograd) {
    std::string refusal = RulesRefusal(lossScale);
    if (refusal.empty()) return LossAndGradByRules(x, y, grad, updateStats, correct, gradSums);
    if (method == GradMethod::Rules) Fail("method 'rules' cannot take this gradient: " + refusal + "; use method 'autograd' (or leave it out)");
  }
  PassSignals held;  // forward and backward
  at::Tensor output;
  at::Tensor l = LossOf(x, y, updateStats, false, &output);
  auto grads = ag::grad({lossScale == 1.0 ? l : l * lossScale}, params, {}, false, false, /*allow_unused=*/true);
  auto sums = WriteFlat(grads, grad);
  if (lossScale != 1.0) {
    at::NoGradGuard ng;
    grad.div_(lossScale);
    // ÷ a power of two: the sum stays the scaled one (finite exactly when it is), the squares are the written gradient's
    if (sums) sums->squares /= lossScale * lossScale;
  }
  if (gradSums) *gradSums = sums;
  // training accuracy for free: the logits are at hand
  correct = CountCorrect(output, y);
  return l.item<double>();
}

// The forward pass keeps what each layer's reverse step needs; the loss's
// ∂L/∂z is LossPrimal's (the one the HVPs' reverse pass starts from); the
// reverse steps write each parameter's gradient into its part of `grad`.
double Network::LossAndGradByRules(const at::Tensor& x, const at::Tensor& y, at::Tensor& grad, bool updateStats,
                                   int64_t& correct, std::optional<FlatSums>* gradSums) {
  PassSignals held;
  at::NoGradGuard ng;
  return IntoSeparate(grad, {x, y}, [&](at::Tensor& out) {
    Pass pass{params, buffers, counters, training, updateStats, /*twiceDifferentiable=*/false, gen, stats_.get()};
    std::vector<at::Tensor> parts = SplitLikeParams(out, 0);
    std::vector<char> written(parts.size(), 0);
    GradPass state{pass, parts, written};
    bool upstream = false;
    GradBackward backward;
    at::Tensor z = RunLayersGrad(layers_, x, state, upstream, backward);
    auto lg = LossPrimal(z, y, nullptr);
    if (upstream) backward(lg[1]);
    for (size_t i = 0; i < parts.size(); ++i)
      if (!written[i]) parts[i].zero_();  // a parameter the loss does not depend on
    if (gradSums) *gradSums = FusedSum(out);
    correct = CountCorrect(z, y);
    return lg[0].item<double>();
  });
}

double Network::GraphHvp(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, at::Tensor& out,
                         PrimalCache& cache) {
  KeepGraph(cache, CacheKey(x, y, "double-backward"), [&] { cache.graph = GradientGraph(x, y, cache.loss); });
  // H v = the gradient graph's backward with v as its output gradient
  // (PyTorch's idiom: autograd.grad(grads, params, grad_outputs=v)), no ⟨g, v⟩
  // nodes of its own; a gradient entry that does not depend on w adds nothing
  auto hv = BackwardWith(cache.graph, 0, v, params);
  if (hv.empty())
    out.zero_();
  else
    WriteFlat(hv, out);
  return cache.loss.item<double>();
}

double Network::IntoSeparate(at::Tensor& out, const std::vector<at::Tensor>& reads, const std::function<double(at::Tensor&)>& pass) const {
  auto overlaps = [&](const at::Tensor& t) { return t.defined() && at::get_overlap_status(out, t) != at::MemOverlapStatus::No; };
  if (std::none_of(reads.begin(), reads.end(), overlaps) && !overlaps(flatParams) && !overlaps(flatBuffers)) return pass(out);
  at::Tensor fresh = at::empty_like(out);
  double loss = pass(fresh);
  out.copy_(fresh);
  return loss;
}

void Network::KeepGraph(PrimalCache& cache, const PrimalCache::Key& key, const std::function<void()>& record) const {
  if (cache.key == key && !cache.graph.empty()) {
    ++cache.replays;
  } else {
    cache.Clear();
    try {
      record();
    } catch (...) {
      cache.Clear();  // a half-recorded graph must not be replayed
      throw;
    }
    cache.key = key;
    ++cache.records;
    cache.graphSequence = at::sequence_number::peek();
  }
  // Autograd runs ready nodes in the order of their sequence numbers, which
  // each thread counts on its own. Nodes a caller adds on top of the kept
  // graph (QuadraticFormGrad's ⟨g, v⟩ and its HVP's graph) must come after
  // the graph's, as they do on the thread that recorded it; a call on another
  // of libuv's threads would otherwise interleave them by that thread's count,
  // and a backward pass through both would sum its gradients in another order
  // (other bits: seen on the async step test's CNN). So this thread's count
  // is moved past the graph's (once per thread: counts only grow).
  while (at::sequence_number::peek() < cache.graphSequence) at::sequence_number::get_and_increment();
}

std::vector<at::Tensor> Network::BackwardWith(const std::vector<at::Tensor>& graph, size_t first, const at::Tensor& v,
                                              const std::vector<at::Tensor>& inputs) const {
  const auto& ps = slots.params;
  std::vector<at::Tensor> outputs, directions;
  for (size_t i = 0; i < ps.size(); ++i) {
    const at::Tensor& t = graph[first + i];
    if (t.defined() && t.requires_grad()) {
      outputs.push_back(t);
      directions.push_back(v.narrow(0, ps[i].offset, ps[i].numel).view(ps[i].shape));
    }
  }
  if (outputs.empty()) return {};
  return ag::grad(outputs, inputs, directions, /*retain_graph=*/true, false, /*allow_unused=*/true);
}

// Forward-over-reverse (Hvp) does about 2/3 of the matrix work of double
// backward through autograd, which is kept as an independent second method.
double Network::HvpBy(const std::string& method, const at::Tensor& x, const at::Tensor& y, const at::Tensor& v,
                      at::Tensor& out, PrimalCache* cache) {
  PassSignals held;
  if (method == "forward-over-reverse") return IntoSeparate(out, {v}, [&](at::Tensor& o) { return Hvp(x, y, v, o, cache); });
  // Double backward through the gradient's graph, kept in the caller's
  // cache or in one for this call: a block builds the graph once and
  // takes one backward pass of it per direction.
  PrimalCache local;
  PrimalCache& graph = cache ? *cache : local;
  bool block = v.dim() == 2;
  double loss = 0;
  for (int64_t k = 0; k < (block ? v.size(0) : 1); ++k) {
    at::Tensor vk = block ? v.select(0, k) : v, outk = block ? out.select(0, k) : out;
    loss = GraphHvp(x, y, vk, outk, graph);
  }
  return loss;
}

double Network::CurvatureBy(const std::string& method, const at::Tensor& x, const at::Tensor& y, const at::Tensor& v,
                            at::Tensor& out, PrimalCache* cache) {
  PassSignals held;
  if (method == "forward-over-forward") return Curvature(x, y, v, out, cache);
  // ⟨v, Hv⟩ per row: forward-over-reverse takes a block in one pass, double backward row by row
  at::Tensor hv = at::empty_like(v);
  double loss = 0;
  if (method == "forward-over-reverse") {
    loss = Hvp(x, y, v, hv, cache);
  } else {
    PrimalCache local;
    for (int64_t k = 0; k < (v.dim() == 2 ? v.size(0) : 1); ++k) {
      at::Tensor vk = v.dim() == 2 ? v.select(0, k) : v, hk = v.dim() == 2 ? hv.select(0, k) : hv;
      loss = GraphHvp(x, y, vk, hk, cache ? *cache : local);
    }
  }
  at::NoGradGuard ng;
  out.copy_((v * hv).sum(-1).reshape(out.sizes()));
  return loss;
}

// gv = ⟨∇L, v⟩ with the gradient's graph; ∇_w gv = H v, taken with its own
// graph (create_graph), so q = ⟨H v, v⟩ = vᵀHv is differentiable once more:
// ∇_w q, a third derivative of the loss (the exact estimator's). The
// gradient's graph is the part that does not depend on v: kept in `cache`, a
// step's samples build it once, and each later sample runs only its own
// second and third passes (0.79–0.86× the time of a sample that builds it:
// npm run bench:third-order, docs/benchmarks.md). Each
// sample's ⟨g, v⟩ and ⟨Hv, v⟩ nodes are its own, so q and ∇q are the same
// bits with or without a cache.
double Network::QuadraticFormGrad(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, at::Tensor& out,
                                  PrimalCache* cache) {
  PassSignals held;
  PrimalCache local;
  PrimalCache& kept = cache ? *cache : local;
  // KeepGraph also orders this call's new nodes after the kept graph's, on whatever thread it runs
  KeepGraph(kept, CacheKey(x, y, "double-backward"), [&] { kept.graph = GradientGraph(x, y, kept.loss); });
  at::Tensor gv = DotFlat(kept.graph, v);
  if (!gv.requires_grad()) {
    out.zero_();
    return 0;
  }
  at::Tensor qt = DotFlat(ag::grad({gv}, params, {}, true, true, true), v);
  // the third pass runs back through the kept graph: retained for the next sample
  WriteGradient(qt, out, /*retain=*/cache != nullptr);
  return qt.item<double>();
}

}  // namespace usam
