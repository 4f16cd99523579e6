#include "fused.h"

#include "errors.h"

#include <algorithm>

namespace usam {

namespace {

bool Fusable(const at::Tensor& t) { return t.device().is_cpu() && t.is_contiguous(); }

constexpr int64_t kGrain = 1 << 15;

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
  std::vector<double> partial(static_cast<size_t>(at::get_num_threads()) + 1, 0.0);
  at::parallel_for(0, dst.numel(), kGrain, [&](int64_t begin, int64_t end) {
    double acc[4] = {0, 0, 0, 0};  // independent accumulators: no serial add chain
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
    partial[static_cast<size_t>(at::get_thread_num())] += (acc[0] + acc[1]) + (acc[2] + acc[3]);
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
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
double CopySumLoop(at::Tensor& dst, const at::Tensor& src) {
  T* out = dst.data_ptr<T>();
  const T* in = src.data_ptr<T>();
  std::vector<double> partial(static_cast<size_t>(at::get_num_threads()) + 1, 0.0);
  at::parallel_for(0, dst.numel(), kGrain, [&](int64_t begin, int64_t end) {
    double acc[4] = {0, 0, 0, 0};
    int64_t k = begin;
    for (; k + 4 <= end; k += 4)
      for (int j = 0; j < 4; ++j) {
        out[k + j] = in[k + j];
        acc[j] += static_cast<double>(in[k + j]);
      }
    for (; k < end; ++k) {
      out[k] = in[k];
      acc[0] += static_cast<double>(in[k]);
    }
    partial[static_cast<size_t>(at::get_thread_num())] += (acc[0] + acc[1]) + (acc[2] + acc[3]);
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

template <typename T>
void SgdLoop(at::Tensor& wt, const at::Tensor& gt, at::Tensor& bt, const SgdParams& p) {
  T* w = wt.data_ptr<T>();
  const T* g = gt.data_ptr<T>();
  T* b = bt.data_ptr<T>();
  const T lr = static_cast<T>(p.lr), mu = static_cast<T>(p.momentum), wd = static_cast<T>(p.weightDecay);
  const T keep = static_cast<T>(1.0 - p.dampening);
  const bool useMomentum = p.momentum != 0, first = p.first, nesterov = p.nesterov;
  at::parallel_for(0, wt.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      T d = wd != T(0) ? g[k] + wd * w[k] : g[k];
      if (useMomentum) {
        T m = first ? d : mu * b[k] + keep * d;
        b[k] = m;
        d = nesterov ? d + mu * m : m;
      }
      w[k] -= lr * d;
    }
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

bool FusedCopySum(at::Tensor& dst, const at::Tensor& src, double& sum) {
  if (!Fusable(dst) || !Fusable(src) || dst.scalar_type() != src.scalar_type() || dst.numel() != src.numel()) return false;
  if (dst.scalar_type() != at::kFloat && dst.scalar_type() != at::kDouble) return false;
  NoteWrite(dst);
  sum = dst.scalar_type() == at::kFloat ? CopySumLoop<float>(dst, src) : CopySumLoop<double>(dst, src);
  return true;
}

void FusedSgd(at::Tensor& w, const at::Tensor& g, at::Tensor& buf, const SgdParams& p) {
  at::NoGradGuard ng;
  bool fusable = Fusable(w) && Fusable(g) && Fusable(buf);
  if (fusable && (w.scalar_type() == at::kFloat || w.scalar_type() == at::kDouble)) {
    NoteWrite(w);
    NoteWrite(buf);
    return w.scalar_type() == at::kFloat ? SgdLoop<float>(w, g, buf, p) : SgdLoop<double>(w, g, buf, p);
  }
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
