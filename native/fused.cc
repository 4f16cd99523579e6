#include "fused.h"

#include "errors.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace usam {

namespace {

bool Fusable(const at::Tensor& t) { return t.device().is_cpu() && t.is_contiguous(); }

constexpr int64_t kGrain = 1 << 15;

// The fused loops' double sums (a NaN/Inf check, a dot, a squared norm) in
// sixteen lanes: element i of a run goes to lane i % 16 (four 4-wide
// vectors), the remainder to a scalar, and the lanes are added in a fixed
// tree at the end. Four accumulators of one lane each (the loops before)
// made chains of dependent double additions: about one element a cycle,
// 10 µs of a 290 µs forward-backward of the tiny model for its gradient's
// sums (perf). The AVX2 path (taken where the CPU has it) and the portable
// one do the same operations in the same order (no FMA: nothing is
// contracted), so they give the same bits.
using d4 = double __attribute__((vector_size(32)));

struct alignas(32) Lanes {
  d4 v[4] = {};
  double tail = 0;
  double Total() const {
    d4 t = (v[0] + v[1]) + (v[2] + v[3]);
    return ((t[0] + t[1]) + (t[2] + t[3])) + tail;
  }
};

enum class Term { Value, Product, Square };  // a[i], a[i]·b[i], a[i]²

template <Term K, typename T>
double ScalarTerm(const T* a, const T* b, int64_t i) {
  double x = static_cast<double>(a[i]);
  return K == Term::Value ? x : K == Term::Square ? x * x : x * static_cast<double>(b[i]);
}

// The portable path: GCC's vector extensions (SSE2 pairs on baseline x86-64)
template <Term K, typename T>
void AddRunPortable(Lanes& acc, const T* a, const T* b, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 4; ++j) {
      d4 x, y;
      for (int l = 0; l < 4; ++l) x[l] = static_cast<double>(a[i + 4 * j + l]);
      if (K == Term::Square) x = x * x;
      if (K == Term::Product) {
        for (int l = 0; l < 4; ++l) y[l] = static_cast<double>(b[i + 4 * j + l]);
        x = x * y;
      }
      acc.v[j] += x;
    }
  for (; i < n; ++i) acc.tail += ScalarTerm<K>(a, b, i);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) inline __m256d Load4Avx(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
__attribute__((target("avx2"))) inline __m256d Load4Avx(const double* p) { return _mm256_loadu_pd(p); }

template <Term K, typename T>
__attribute__((target("avx2"))) void AddRunAvx2(Lanes& acc, const T* a, const T* b, int64_t n) {
  double* lanes = reinterpret_cast<double*>(acc.v);
  __m256d v[4];
  for (int j = 0; j < 4; ++j) v[j] = _mm256_load_pd(lanes + 4 * j);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 4; ++j) {
      __m256d x = Load4Avx(a + i + 4 * j);
      if (K == Term::Square) x = _mm256_mul_pd(x, x);
      if (K == Term::Product) x = _mm256_mul_pd(x, Load4Avx(b + i + 4 * j));
      v[j] = _mm256_add_pd(v[j], x);
    }
  for (int j = 0; j < 4; ++j) _mm256_store_pd(lanes + 4 * j, v[j]);
  for (; i < n; ++i) acc.tail += ScalarTerm<K>(a, b, i);
}

// USAM_PORTABLE_SUMS=1 takes the portable path on an AVX2 CPU too (read once,
// at load): test/integration/fused-sums.test.ts holds the two to the same bits
const bool kAvx2 = [] {
  __builtin_cpu_init();  // a static initializer may run before libgcc's own
  const char* v = std::getenv("USAM_PORTABLE_SUMS");
  return __builtin_cpu_supports("avx2") && (v == nullptr || std::string(v) != "1");
}();
#endif

// acc += Σ over n elements of the term, in double
template <Term K, typename T>
void AddRun(Lanes& acc, const T* a, const T* b, int64_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (kAvx2) return AddRunAvx2<K>(acc, a, b, n);
#endif
  AddRunPortable<K>(acc, a, b, n);
}

template <typename T>
void AddSum(Lanes& acc, const T* a, int64_t n) { AddRun<Term::Value, T>(acc, a, nullptr, n); }
template <typename T>
void AddSquares(Lanes& acc, const T* a, int64_t n) { AddRun<Term::Square, T>(acc, a, nullptr, n); }
template <typename T>
void AddDot(Lanes& acc, const T* a, const T* b, int64_t n) { AddRun<Term::Product, T>(acc, a, b, n); }

// A chunk's loop runs in blocks of this many elements (in L1 for a second
// look: the terms of a combination, then their sum)
constexpr int64_t kBlock = 256;

// M sums over [0, n): `chunk(begin, end, acc)` adds a range's into acc[0..M),
// chunk by chunk in parallel (kGrain), the chunks' totals added per thread.
template <size_t M, typename Chunk>
std::array<double, M> ParallelSums(int64_t n, const Chunk& chunk) {
  std::vector<std::array<double, M>> partial(static_cast<size_t>(at::get_num_threads()) + 1, std::array<double, M>{});
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    std::array<Lanes, M> acc;
    chunk(begin, end, acc.data());
    auto& p = partial[static_cast<size_t>(at::get_thread_num())];
    for (size_t m = 0; m < M; ++m) p[m] += acc[m].Total();
  });
  std::array<double, M> total{};
  for (const auto& p : partial)
    for (size_t m = 0; m < M; ++m) total[m] += p[m];
  return total;
}

template <typename Chunk>
double ParallelSum(int64_t n, const Chunk& chunk) {
  return ParallelSums<1>(n, chunk)[0];
}

// N > 0: a fixed number of terms, so the inner loop unrolls and vectorises;
// N == 0: any number of terms.
template <typename T, size_t N>
double CombineLoop(at::Tensor& dst, const std::vector<double>& c, const std::vector<at::Tensor>& xs) {
  T* out = dst.data_ptr<T>();
  const size_t n = N > 0 ? N : xs.size();
  // the terms' pointers and coefficients in local arrays for a fixed count:
  // held in a std::vector, the coefficients (T, as out is) may alias out's
  // stores, so GCC reloaded them every element (the 2-term combination of
  // the MLP's 168k floats 97 µs against a 27 µs dot)
  using Slots = std::conditional_t<(N > 0), std::array<const T*, (N > 0 ? N : 1)>, std::vector<const T*>>;
  using Coefs = std::conditional_t<(N > 0), std::array<T, (N > 0 ? N : 1)>, std::vector<T>>;
  Slots in{};
  Coefs coef{};
  if constexpr (N == 0) {
    in.resize(n);
    coef.resize(n);
  }
  for (size_t i = 0; i < n; ++i) {
    in[i] = xs[i].data_ptr<T>();
    coef[i] = static_cast<T>(c[i]);
  }
  return ParallelSum(dst.numel(), [&](int64_t begin, int64_t end, Lanes* acc) {
    for (int64_t block = begin; block < end; block += kBlock) {
      const int64_t stop = std::min(end, block + kBlock);
      // the terms first (vectorised: dst aliases at most in[0], element by element)
#pragma GCC ivdep
      for (int64_t k = block; k < stop; ++k) {
        T v = coef[0] * in[0][k];
        for (size_t i = 1; i < (N > 0 ? N : n); ++i) v += coef[i] * in[i][k];
        out[k] = v;
      }
      AddSum(acc[0], out + block, stop - block);
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
double ShiftDotLoop(at::Tensor& dst, const at::Tensor& base, double scale, const at::Tensor& dir, const at::Tensor* probe, at::Tensor* keep) {
  T* out = dst.data_ptr<T>();
  const T* w = base.data_ptr<T>();
  const T* u = dir.data_ptr<T>();
  const T* g = probe ? probe->data_ptr<T>() : nullptr;
  T* kept = keep ? keep->data_ptr<T>() : nullptr;
  const T s = static_cast<T>(scale);
  return ParallelSum(dst.numel(), [&](int64_t begin, int64_t end, Lanes* acc) {
    for (int64_t block = begin; block < end; block += kBlock) {
      const int64_t stop = std::min(end, block + kBlock);
      if (g) AddDot(acc[0], g + block, u + block, stop - block);  // before the update: out may alias w, never g or u
      // w's block into keep while it is in L1, before out (which may be w) is written
      if (kept) std::memcpy(kept + block, w + block, static_cast<size_t>(stop - block) * sizeof(T));
      // out may alias w only, element by element: no dependence across iterations
#pragma GCC ivdep
      for (int64_t k = block; k < stop; ++k) out[k] = w[k] + s * u[k];
    }
  });
}

// Σ x and Σ x² of `in`, with out = in first where out is not null
template <typename T>
FlatSums SumsLoop(T* out, const T* in, int64_t n) {
  auto s = ParallelSums<2>(n, [&](int64_t begin, int64_t end, Lanes* acc) {
    for (int64_t block = begin; block < end; block += kBlock) {
      const int64_t len = std::min(end, block + kBlock) - block;
      if (out) std::memmove(out + block, in + block, static_cast<size_t>(len) * sizeof(T));
      AddSum(acc[0], in + block, len);
      AddSquares(acc[1], in + block, len);
    }
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

double FusedShiftDot(at::Tensor& dst, const at::Tensor& base, double scale, const at::Tensor& dir, const at::Tensor* probe, at::Tensor* keep) {
  at::NoGradGuard ng;
  if (Fusable(dst) && Fusable(base) && Fusable(dir) && (!probe || Fusable(*probe)) && (!keep || Fusable(*keep)) &&
      (dst.scalar_type() == at::kFloat || dst.scalar_type() == at::kDouble)) {
    NoteWrite(dst);
    if (keep) NoteWrite(*keep);
    return dst.scalar_type() == at::kFloat ? ShiftDotLoop<float>(dst, base, scale, dir, probe, keep)
                                           : ShiftDotLoop<double>(dst, base, scale, dir, probe, keep);
  }
  if (keep) keep->copy_(base);
  // the dot first: dst may alias base, which the dot does not read
  double slope = probe ? at::dot(probe->reshape(-1).to(at::kDouble), dir.reshape(-1).to(at::kDouble)).item<double>() : 0.0;
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

const char* FusedSumsPath() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (kAvx2) return "avx2";
#endif
  return "portable";
}

std::optional<double> FusedDot(const at::Tensor& a, const at::Tensor& b) {
  if (!Fusable(a) || !Fusable(b) || a.scalar_type() != b.scalar_type() || a.numel() != b.numel()) return std::nullopt;
  auto dot = [&](auto* pa, auto* pb) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(pa)>>;
    const bool same = pa == pb;
    return ParallelSum(a.numel(), [&](int64_t begin, int64_t end, Lanes* acc) {
      if (same) AddSquares<T>(acc[0], pa + begin, end - begin);
      else AddDot<T>(acc[0], pa + begin, pb + begin, end - begin);
    });
  };
  if (a.scalar_type() == at::kFloat) return dot(a.data_ptr<float>(), b.data_ptr<float>());
  if (a.scalar_type() == at::kDouble) return dot(a.data_ptr<double>(), b.data_ptr<double>());
  return std::nullopt;
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
