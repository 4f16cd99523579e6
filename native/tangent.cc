// The tangent and jet algebra (tangent.h): the rules shared by the layers'
// derivative passes, the matrix products they run on, and the cache of their
// direction-independent parts.
#include "tangent.h"

#include <unordered_set>

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>

namespace usam {

// a + b, where an undefined tensor stands for zero.
at::Tensor Plus(const at::Tensor& a, const at::Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return a + b;
}

// The reverse step of a layer whose input does not depend on the parameters
// and which has no parameters itself: nothing to propagate.
Dual NothingUpstream(const Dual&) { return {}; }
// Block mode: a tangent [K, N, ...] folded to [K·N, ...] for per-sample
// maps (pooling, convolutions with the layer's own weight), and back.
at::Tensor Fold(const at::Tensor& t, const DualPass& p) { return p.block ? t.flatten(0, 1) : t; }
at::Tensor Unfold(const at::Tensor& t, const DualPass& p) {
  if (!p.block) return t;
  std::vector<int64_t> shape{p.block, t.size(0) / p.block};
  for (int64_t d = 1; d < t.dim(); ++d) shape.push_back(t.size(d));
  return t.view(shape);
}
// The shape of a tangent of a value of shape `shape`.
std::vector<int64_t> TangentShape(std::vector<int64_t> shape, const DualPass& p) {
  if (p.block) shape.insert(shape.begin(), p.block);
  return shape;
}

// The reverse step of an identity map of x.
DualBackward IdentityBackward(const Dual& x) {
  if (!x.tangent.defined()) return NothingUpstream;
  return [](const Dual& g) { return g; };
}

#ifdef USAM_DNNL_SGEMM
// oneDNN's row-major sgemm (dnnl.h; the library Debian's LibTorch links).
extern "C" int dnnl_sgemm(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// OpenMP's per-thread team size (libgomp, which LibTorch and oneDNN load).
extern "C" int omp_get_max_threads(void);
extern "C" void omp_set_num_threads(int n);
#endif

namespace {

// Where this process calls oneDNN's sgemm directly. A build against a 1.x
// LibTorch with the system's libdnnl links it (USAM_DNNL_SGEMM). Any other
// build looks for the system's libdnnl.so.2 (Debian's libdnnl2: oneDNN 2.6)
// when USAM_DNNL_SGEMM=1 is set: on the development machine (AMD EPYC, one
// thread) the benchmark MLP's forward-backward took 0.85-1.13 ms with it
// against 1.49-1.55 ms with the 2.13 wheel's at::mm (MKL). OpenMP's controls
// are whichever libgomp the process loaded first (LibTorch's; the library's
// own dependency resolves to the same one).
struct DirectSgemm {
  int (*sgemm)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*,
               int64_t) = nullptr;
  int (*maxThreads)() = nullptr;
  void (*setThreads)(int) = nullptr;
  bool linked = false;  // linked at build time (1.x): taken at any thread count
};

const DirectSgemm& Direct() {
  static const DirectSgemm direct = [] {
    DirectSgemm d;
#ifdef USAM_DNNL_SGEMM
    d.sgemm = &dnnl_sgemm;
    d.maxThreads = &omp_get_max_threads;
    d.setThreads = &omp_set_num_threads;
    d.linked = true;
#else
    const char* on = std::getenv("USAM_DNNL_SGEMM");
    if (on != nullptr && std::string(on) == "1") {
      // RTLD_DEEPBIND: the library's own symbols first. Without it, in a
      // process holding the 2.13 wheel (which carries MKL and another oneDNN),
      // this library's sgemm ran MKL's kernels (perf), no faster than at::mm.
      if (void* lib = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND)) {
        d.sgemm = reinterpret_cast<decltype(d.sgemm)>(dlsym(lib, "dnnl_sgemm"));
        d.maxThreads = reinterpret_cast<decltype(d.maxThreads)>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
        d.setThreads = reinterpret_cast<decltype(d.setThreads)>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
        if (d.sgemm == nullptr || d.maxThreads == nullptr || d.setThreads == nullptr) d = DirectSgemm();
      }
    }
#endif
    return d;
  }();
  return direct;
}

// The calling thread alone runs oneDNN's sgemm (a team of one; see PassSignals).
class TeamOfOne {
 public:
  TeamOfOne() : threads_(Direct().maxThreads()) {
    if (threads_ > 1) Direct().setThreads(1);
  }
  ~TeamOfOne() {
    if (threads_ > 1) Direct().setThreads(threads_);
  }

 private:
  int threads_;
};
thread_local int signalsHeldDepth = 0;
}  // namespace

bool DnnlSgemm() { return Direct().sgemm != nullptr; }

// where sgemm is taken at runtime (2.x), only at one intra-op thread: the
// team of one would otherwise give up LibTorch's threads
bool DnnlSgemmNow() { return DnnlSgemm() && (Direct().linked || at::get_num_threads() == 1); }

// oneDNN before 3.11.2 runs its JIT sgemm kernels with rsp pointing into the
// heap (oneDNN issue #4845): a signal handled on a thread inside one pushes
// its frame there and corrupts the heap. Debian's LibTorch 1.13 links
// oneDNN 2.6. Measured here: a stream of SIGHUP (handled by Node) aborted a
// loop of MLP forward-backward passes after about 3,500 signals ("corrupted
// size vs. prev_size"), and `node --cpu-prof` (SIGPROF) at once; the
// LibTorch 2.13 build (no direct sgemm) took 321,410 signals unharmed. So
// each sgemm runs on the calling thread alone (its OpenMP threads would take
// signals meant for the process; blocking them there left 2 threads
// aborting after 105,347 signals; one thread of oneDNN's sgemm is still
// several times OpenBLAS's generic build at two) with the thread's signals
// held: blocked, and delivered when the outermost hold ends. The network's
// passes hold them once for the whole pass (a hold per product cost two
// system calls each: the tiny model's forward-backward 0.17 -> 0.22 ms);
// ProductInto holds them itself when called outside one.
PassSignals::PassSignals() : active_(DnnlSgemm()) {
  if (!active_ || signalsHeldDepth++ > 0) return;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &saved_);
}

PassSignals::~PassSignals() {
  if (!active_ || --signalsHeldDepth > 0) return;
  pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
}

// The matrix products of the HVP and jet passes of Linear layers. Debian's
// LibTorch 1.13 gives float32 products to its BLAS (OpenBLAS, generic build):
// on this machine, one thread, 512×784 @ 784×256 took 8.6 ms there against
// 1.9 ms in oneDNN's sgemm, which the same LibTorch links (4.5×; the
// transposed product 8.9 against 1.5 ms). Builds against such a LibTorch
// (USAM_DNNL_SGEMM) take float32 CPU products there; everything else, and
// any layout sgemm cannot take, goes to at::mm.
// out = a·b, or out += a·b, for a [M, K] and b [K, N] (each row-major or the
// transpose of a row-major view) or a block of them [B, ·, ·] (a shared 2-D
// operand broadcast); out contiguous.
void ProductInto(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool accumulate) {
  if (a.dim() == 3 || b.dim() == 3) {
    // a block times a shared right operand is one product over the folded rows
    if (b.dim() == 2 && a.is_contiguous()) {
      at::Tensor folded = out.view({-1, out.size(-1)});
      ProductInto(folded, a.view({-1, a.size(-1)}), b, accumulate);
      return;
    }
    for (int64_t k = 0; k < out.size(0); ++k) {
      at::Tensor o = out.select(0, k);
      ProductInto(o, a.dim() == 3 ? a.select(0, k) : a, b.dim() == 3 ? b.select(0, k) : b, accumulate);
    }
    return;
  }
  if (DnnlSgemmNow()) {
  // each operand row-major ('N', its row stride) or a transposed row-major view ('T', its column stride)
  auto layout = [](const at::Tensor& t, char& trans, int64_t& ld) {
    if (t.stride(1) == 1 && t.stride(0) >= t.size(1)) {
      trans = 'N', ld = t.stride(0);
      return true;
    }
    if (t.stride(0) == 1 && t.stride(1) >= t.size(0)) {
      trans = 'T', ld = t.stride(1);
      return true;
    }
    return false;
  };
  char ta = 0, tb = 0;
  int64_t lda = 0, ldb = 0;
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  bool floats = a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && out.scalar_type() == at::kFloat;
  bool cpu = a.device().is_cpu() && b.device().is_cpu() && out.device().is_cpu();
  if (floats && cpu && M > 0 && N > 0 && K > 0 && out.is_contiguous() && layout(a, ta, lda) && layout(b, tb, ldb)) {
    int status = 0;
    {
      PassSignals held;
      TeamOfOne team;
      status = Direct().sgemm(ta, tb, M, N, K, 1.0f, a.data_ptr<float>(), lda, b.data_ptr<float>(), ldb, accumulate ? 1.0f : 0.0f,
                              out.data_ptr<float>(), N);
    }
    if (status == 0) {
      NoteWrite(out);  // written through its pointer: autograd's and the caches' version checks must see it
      return;
    }
  }
  }
  if (accumulate)
    out.addmm_(a, b);
  else
    at::mm_out(out, a, b);
}
at::Tensor Product(const at::Tensor& a, const at::Tensor& b) {
  std::vector<int64_t> shape{a.size(-2), b.size(-1)};
  if (a.dim() == 3 || b.dim() == 3) shape.insert(shape.begin(), a.dim() == 3 ? a.size(0) : b.size(0));
  at::Tensor out = at::empty(shape, a.options());
  ProductInto(out, a, b, false);
  return out;
}
void AddProduct(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) { ProductInto(out, a, b, true); }
// x Wᵀ + bias (the bias broadcast over the rows), as at::linear.
at::Tensor Affine(const at::Tensor& x2, const at::Tensor& w, const at::Tensor& bias) {
  at::Tensor y = Product(x2, w.t());
  if (bias.defined()) y.add_(bias);
  return y;
}

// Tangent and reverse step of a parameter-free linear map f: R{y} = f(ẋ),
// and the reverse step applies the vector-Jacobian product of f (taken from
// autograd on a one-op graph; f is linear, so it does not depend on x) to
// both the gradient and its tangent.
Dual LinearMapDual(const Dual& x, DualPass& p, const std::function<at::Tensor(const at::Tensor&)>& f,
                   DualBackward& backward) {
  at::Tensor y = Primal(p, [&] { return f(x.value); });
  if (!x.tangent.defined()) {
    backward = NothingUpstream;
    return {y, {}};
  }
  backward = [&p, x0 = x.value, f](const Dual& g) -> Dual {
    // f is linear, so its vector-Jacobian product does not depend on the
    // point: a block's folded tangents take one of their own shape
    auto vjp = [&](const at::Tensor& t, const at::Tensor& at) {
      at::AutoGradMode on(true);
      at::Tensor leaf = at.detach().requires_grad_(true);
      return torch::autograd::grad({f(leaf)}, {leaf}, {t})[0];
    };
    at::Tensor dx = Primal(p, [&] { return vjp(g.value, x0); });
    if (!p.block) return {dx, vjp(g.tangent, x0)};
    at::Tensor gt = Fold(g.tangent, p);
    std::vector<int64_t> folded = x0.sizes().vec();
    folded[0] *= p.block;
    return {dx, Unfold(vjp(gt, at::zeros(folded, x0.options())), p)};
  };
  return {y, Unfold(f(Fold(x.tangent, p)), p)};
}

// A jet through a parameter-free linear map f (pooling): every order is f of
// the same order.
Jet LinearMapJet(const Jet& x, DualPass& p, const std::function<at::Tensor(const at::Tensor&)>& f) {
  at::Tensor y = Primal(p, [&] { return f(x.value); });
  auto map = [&](const at::Tensor& t) { return t.defined() ? Unfold(f(Fold(t, p)), p) : at::Tensor(); };
  return {y, map(x.d1), map(x.d2)};
}

// A jet through an elementwise product with a constant (dropout's mask, ReLU's slope as a mask).
Jet ScaledJet(const at::Tensor& y, const Jet& x, const std::function<at::Tensor(const at::Tensor&)>& scale) {
  return {y, x.d1.defined() ? scale(x.d1) : at::Tensor(), x.d2.defined() ? scale(x.d2) : at::Tensor()};
}

// The jet of a normalisation x̂ = c·r, c = x − m(x), r = (m(c²) + ε)^(−1/2),
// from the primal x̂, c and r (cached: they do not depend on v); m(·) is the
// mean over `tdims` of a tangent (a value's dims, shifted past a block's
// leading K):
//   ċ = ẋ − m(ẋ), ṡ = 2 m(c ċ), ṙ = −½ r³ ṡ, x̂' = ċ r + c ṙ;
//   c̈ = ẍ − m(ẍ), s̈ = 2 m(ċ² + c c̈), r̈ = ¾ r⁵ ṡ² − ½ r³ s̈,
//   x̂'' = c̈ r + 2 ċ ṙ + c r̈.
Jet NormalizedJet(const at::Tensor& xh, const at::Tensor& c, const at::Tensor& r, const Jet& x, at::IntArrayRef tdims) {
  if (!x.d1.defined()) return {xh, {}, {}};
  auto m = [&](const at::Tensor& t) { return t.mean(tdims, /*keepdim=*/true); };
  at::Tensor r3 = r * r * r;
  at::Tensor ct = x.d1 - m(x.d1);
  at::Tensor st = 2 * m(c * ct);
  at::Tensor rt = -0.5 * r3 * st;
  at::Tensor d1 = ct * r + c * rt;
  at::Tensor stt = ct * ct, ctt;
  if (x.d2.defined()) {
    ctt = x.d2 - m(x.d2);
    stt.add_(c * ctt);
  }
  stt = 2 * m(stt);
  at::Tensor rtt = 0.75 * r3 * r * r * st * st - 0.5 * r3 * stt;
  at::Tensor d2 = 2 * ct * rt + c * rtt;
  if (ctt.defined()) d2.add_(ctt * r);
  return {xh, d1, d2};
}

// y = γ x̂ + β along v: ẏ = v_γ x̂ + γ x̂' + v_β, ÿ = 2 v_γ x̂' + γ x̂''; γ, β
// and their tangents shaped to broadcast against x̂ and its derivatives.
Jet AffineJet(const at::Tensor& y, const Jet& xh, const at::Tensor& gamma, const at::Tensor& vgamma, const at::Tensor& vbeta) {
  at::Tensor d1 = xh.value * vgamma + vbeta, d2;
  if (xh.d1.defined()) {
    d1 = d1 + xh.d1 * gamma;
    d2 = 2 * xh.d1 * vgamma;
  }
  if (xh.d2.defined()) d2 = Plus(d2, xh.d2 * gamma);
  return {y, d1, d2};
}

std::vector<at::Tensor> PrimalCache::Next(const std::function<std::vector<at::Tensor>()>& compute) {
  if (!replaying) {
    entries.push_back(compute());
    return entries.back();
  }
  if (cursor >= entries.size()) Fail("internal error: an HVP replayed more of its cache than it recorded");
  return entries[cursor++];
}

void PrimalCache::Clear() {
  key = Key{};
  replaying = false;
  cursor = 0;
  entries.clear();
  graph.clear();
  graphSequence = 0;
  loss = at::Tensor();
}

int64_t PrimalCache::Bytes() const {
  std::unordered_set<const void*> seen;
  int64_t total = 0;
  auto count = [&](const at::Tensor& t) {
    if (!t.defined()) return;
    const auto& storage = t.storage();
    if (seen.insert(storage.unsafeGetStorageImpl()).second) total += static_cast<int64_t>(storage.nbytes());
  };
  for (const auto& e : entries)
    for (const auto& t : e) count(t);
  for (const auto& t : graph) count(t);
  return total;
}

}  // namespace usam
