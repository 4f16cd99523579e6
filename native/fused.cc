#include "fused.h"

#include "errors.h"

#include <algorithm>
#include <array>

namespace usam {

namespace {

bool Fusable(const at::Tensor& t) { return t.device().is_cpu() && t.is_contiguous(); }

constexpr int64_t kGrain = 1 << 15;

// M sums over [0, n) of what `chunk(begin, end, acc)` adds into M rows of
// four double accumulators (independent: no serial add chain), chunk by
// chunk in parallel; the fused loops' sums (a NaN/Inf check, a dot, a
// squared norm) all take this.
template <size_t M, typename Chunk>
std::array<double, M> ParallelSums(int64_t n, const Chunk& chunk) {
  std::vector<std::array<double, M>> partial(static_cast<size_t>(at::get_num_threads()) + 1, std::array<double, M>{});
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    double acc[M][4] = {};
    chunk(begin, end, acc);
    auto& p = partial[static_cast<size_t>(at::get_thread_num())];
    for (size_t m = 0; m < M; ++m) p[m] += (acc[m][0] + acc[m][1]) + (acc[m][2] + acc[m][3]);
  });
  std::array<double, M> total{};
  for (const auto& p : partial)
    for (size_t m = 0; m < M; ++m) total[m] += p[m];
  return total;
}

template <typename Chunk>
double ParallelSum(int64_t n, const Chunk& chunk) {
  return ParallelSums<1>(n, [&](int64_t begin, int64_t end, double (*acc)[4]) { chunk(begin, end, acc[0]); })[0];
}

// N > 0: a fixed number of terms, so the inner loop unrolls and vectorises;
// N == 0: any number of terms.
template <typename T, size_t N>
double CombineLoop(at::Tensor& dst, const std::vector<double>& c, const std::vector<at::Tensor>& xs) {
  T* out = dst.data_ptr<T>();
  const size_t n = N > 0 ? N : xs.size();
  std::vector<const T*> in(n);
  std::vector<T> coef(n);
  for (size_t i = 0; i < n; ++i) {
    in[i] = xs[i].data_ptr<T>();
    coef[i] = static_cast<T>(c[i]);
  }
  return ParallelSum(dst.numel(), [&](int64_t begin, int64_t end, double* acc) {
    for (int64_t block = begin; block < end; block += 256) {
      const int64_t stop = std::min(end, block + 256);
      // the terms first (vectorised: dst aliases at most in[0], element by element)
#pragma GCC ivdep
      for (int64_t k = block; k < stop; ++k) {
        T v = coef[0] * in[0][k];
        for (size_t i = 1; i < (N > 0 ? N : n); ++i) v += coef[i] * in[i][k];
        out[k] = v;
      }
      int64_t k = block;
      for (; k + 4 <= stop; k += 4)
        for (int j = 0; j < 4; ++j) acc[j] += static_cast<double>(out[k + j]);
      for (; k < stop; ++k) acc[0] += static_cast<double>(out[k]);
    }
  });
}

template <typename T>
double Combine(at::Tensor& dst, const std::vector<double>& c, const std::vector<at::Tensor>& xs) {
  switch (xs.size()) {
    case 1: return CombineLoop<T, 1>(dst, c, xs);
    case 2: return CombineLoop<T, 2>(dst, c, xs);
    case 3: return CombineLoop<T, 3>(dst, c, xs);
    case 4: return CombineLoop<T, 4>(dst, c, xs);
    default: return CombineLoop<T, 0>(dst, c, xs);
  }
}

template <typename T>
double ShiftDotLoop(at::Tensor& dst, const at::Tensor& base, double scale, const at::Tensor& dir, const at::Tensor& probe) {
  T* out = dst.data_ptr<T>();
  const T* w = base.data_ptr<T>();
  const T* u = dir.data_ptr<T>();
  const T* g = probe.data_ptr<T>();
  const T s = static_cast<T>(scale);
  return ParallelSum(dst.numel(), [&](int64_t begin, int64_t end, double* acc) {
    int64_t k = begin;
    // out may alias w only, element by element: no dependence across iterations
#pragma GCC ivdep
    for (; k + 4 <= end; k += 4)
      for (int j = 0; j < 4; ++j) {
        acc[j] += static_cast<double>(g[k + j]) * static_cast<double>(u[k + j]);
        out[k + j] = w[k + j] + s * u[k + j];
      }
    for (; k < end; ++k) {
      acc[0] += static_cast<double>(g[k]) * static_cast<double>(u[k]);
      out[k] = w[k] + s * u[k];
    }
  });
}

// Σ x and Σ x² over [begin, end) of `in` into acc[0] and acc[1], copying it to `out` where Copy
template <typename T, bool Copy>
void SumsRange(T* out, const T* in, int64_t begin, int64_t end, double (*acc)[4]) {
  int64_t k = begin;
  for (; k + 4 <= end; k += 4)
    for (int j = 0; j < 4; ++j) {
      if (Copy) out[k + j] = in[k + j];
      double v = static_cast<double>(in[k + j]);
      acc[0][j] += v;
      acc[1][j] += v * v;
    }
  for (; k < end; ++k) {
    if (Copy) out[k] = in[k];
    double v = static_cast<double>(in[k]);
    acc[0][0] += v;
    acc[1][0] += v * v;
  }
}

// dst's sums, with dst = src first where `copy`
template <typename T>
FlatSums SumsLoop(T* out, const T* in, int64_t n) {
  auto s = ParallelSums<2>(n, [&](int64_t begin, int64_t end, double (*acc)[4]) {
    if (out) SumsRange<T, true>(out, in, begin, end, acc);
    else SumsRange<T, false>(nullptr, in, begin, end, acc);
  });
  return {s[0], s[1]};
}

// The update over [begin, end), over restrict pointers and not inlined:
// with a second read pointer (w0) and inlined into parallel_for's one-thread
// path, GCC's copy of the loop stayed scalar (≈3× slower, measured). In place
// (Separate false) w0 is not read at all.
template <typename T, bool Separate>
__attribute__((noinline)) void SgdRange(T* __restrict w, const T* __restrict w0, const T* __restrict g, T* __restrict b, int64_t begin, int64_t end, const SgdParams& p) {
  const T lr = static_cast<T>(p.lr), mu = static_cast<T>(p.momentum), wd = static_cast<T>(p.weightDecay);
  const T keep = static_cast<T>(1.0 - p.dampening);
  const bool useMomentum = p.momentum != 0, first = p.first, nesterov = p.nesterov;
  for (int64_t k = begin; k < end; ++k) {
    const T start = Separate ? w0[k] : w[k];
    T d = wd != T(0) ? g[k] + wd * start : g[k];
    if (useMomentum) {
      T m = first ? d : mu * b[k] + keep * d;
      b[k] = m;
      d = nesterov ? d + mu * m : m;
    }
    w[k] = start - lr * d;
  }
}

template <typename T>
void SgdLoop(at::Tensor& wt, const at::Tensor& gt, at::Tensor& bt, const SgdParams& p, const at::Tensor& from) {
  T* w = wt.data_ptr<T>();
  const T* w0 = from.data_ptr<T>();  // w itself, or the weights the step starts from
  const T* g = gt.data_ptr<T>();
  T* b = bt.data_ptr<T>();
  at::parallel_for(0, wt.numel(), kGrain, [&](int64_t begin, int64_t end) {
    if (w0 == w) SgdRange<T, false>(w, nullptr, g, b, begin, end, p);
    else SgdRange<T, true>(w, w0, g, b, begin, end, p);
  });
}

}  // namespace

double FusedCombine(at::Tensor& dst, const std::vector<double>& c, const std::vector<at::Tensor>& xs) {
  at::NoGradGuard ng;
  bool fusable = Fusable(dst);
  for (const auto& x : xs) fusable = fusable && Fusable(x);
  if (fusable && (dst.scalar_type() == at::kFloat || dst.scalar_type() == at::kDouble)) {
    NoteWrite(dst);
    return dst.scalar_type() == at::kFloat ? Combine<float>(dst, c, xs) : Combine<double>(dst, c, xs);
  }
  at::mul_out(dst, xs[0], c[0]);
  for (size_t i = 1; i < xs.size(); ++i) dst.add_(xs[i], c[i]);
  return dst.sum(at::kDouble).item<double>();
}

double FusedShiftDot(at::Tensor& dst, const at::Tensor& base, double scale, const at::Tensor& dir, const at::Tensor& probe) {
  at::NoGradGuard ng;
  if (Fusable(dst) && Fusable(base) && Fusable(dir) && Fusable(probe) && (dst.scalar_type() == at::kFloat || dst.scalar_type() == at::kDouble)) {
    NoteWrite(dst);
    return dst.scalar_type() == at::kFloat ? ShiftDotLoop<float>(dst, base, scale, dir, probe) : ShiftDotLoop<double>(dst, base, scale, dir, probe);
  }
  // the dot first: dst may alias base, which the dot does not read
  double slope = at::dot(probe.reshape(-1).to(at::kDouble), dir.reshape(-1).to(at::kDouble)).item<double>();
  at::add_out(dst, base, dir, scale);
  return slope;
}

bool FusedCopySum(at::Tensor& dst, const at::Tensor& src, FlatSums& sums) {
  if (!Fusable(dst) || !Fusable(src) || dst.scalar_type() != src.scalar_type() || dst.numel() != src.numel()) return false;
  if (dst.scalar_type() != at::kFloat && dst.scalar_type() != at::kDouble) return false;
  NoteWrite(dst);
  sums = dst.scalar_type() == at::kFloat ? SumsLoop<float>(dst.data_ptr<float>(), src.data_ptr<float>(), dst.numel())
                                         : SumsLoop<double>(dst.data_ptr<double>(), src.data_ptr<double>(), dst.numel());
  return true;
}

std::optional<FlatSums> FusedSum(const at::Tensor& x) {
  if (!Fusable(x)) return std::nullopt;
  if (x.scalar_type() == at::kFloat) return SumsLoop<float>(nullptr, x.data_ptr<float>(), x.numel());
  if (x.scalar_type() == at::kDouble) return SumsLoop<double>(nullptr, x.data_ptr<double>(), x.numel());
  return std::nullopt;
}

void FusedSgd(at::Tensor& w, const at::Tensor& g, at::Tensor& buf, const SgdParams& p, const at::Tensor* from) {
  at::NoGradGuard ng;
  const at::Tensor& start = from ? *from : w;
  bool fusable = Fusable(w) && Fusable(g) && Fusable(buf) && Fusable(start);
  if (fusable && (w.scalar_type() == at::kFloat || w.scalar_type() == at::kDouble)) {
    NoteWrite(w);
    NoteWrite(buf);
    return w.scalar_type() == at::kFloat ? SgdLoop<float>(w, g, buf, p, start) : SgdLoop<double>(w, g, buf, p, start);
  }
  if (from) w.copy_(*from);
  at::Tensor d = p.weightDecay != 0 ? g.add(w, p.weightDecay) : g;
  if (p.momentum != 0) {
    if (p.first)
      buf.copy_(d);
    else
      buf.mul_(p.momentum).add_(d, 1.0 - p.dampening);
    d = p.nesterov ? d.add(buf, p.momentum) : buf;
  }
  w.add_(d, -p.lr);
}

}  // namespace usam
