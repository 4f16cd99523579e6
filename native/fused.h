// Fused loops over flat vectors: each reads its inputs once and writes once,
// where the equivalent chain of ATen ops makes a pass (and often a temporary)
// per operation. CPU float/double contiguous tensors take the loops; other
// tensors (CUDA) take ATen ops with the same results.
#pragma once
#include "pch.h"

#include <optional>

namespace usam {

// dst = Σ_i c[i]·xs[i]; returns Σ_k dst[k] in double (finite exactly when
// every element of dst is, short of float64 sums past ~1.8e308: the NaN/Inf
// check comes free).
double FusedCombine(at::Tensor& dst, const std::vector<double>& c, const std::vector<at::Tensor>& xs);

// dst = base + scale·dir, returning ⟨probe, dir⟩ accumulated in double, in
// one pass over the four vectors (a perturbation w0 + s·u together with the
// slope g0ᵀu that the zeroth-order rules' readings subtract). dst may alias
// base only. With `keep` (a tensor of its own), keep = base as well, in the
// same pass: the first perturbation of a step keeps w while it overwrites it.
// Without a probe the dot is skipped (0 returned).
double FusedShiftDot(at::Tensor& dst, const at::Tensor& base, double scale, const at::Tensor& dir, const at::Tensor* probe,
                     at::Tensor* keep = nullptr);

// Σ_k x[k] and Σ_k x[k]² of a flat vector, in double, from one pass over it:
// the sum is the NaN/Inf check (as FusedCombine's), the squares ‖x‖² (a
// gradient's norm for SAM's perturbation with no pass of its own).
struct FlatSums {
  double sum = 0, squares = 0;
};

// dst = src (same numel; src of any shape, dst flat) for a CPU float/double
// contiguous pair of one dtype, returning dst's sums; for any other pair,
// false (nothing written).
bool FusedCopySum(at::Tensor& dst, const at::Tensor& src, FlatSums& sums);

// x's sums, for a CPU float/double contiguous x (as FusedCopySum's, for a
// gradient the layers' rules wrote in place); empty for any other.
std::optional<FlatSums> FusedSum(const at::Tensor& x);

// ⟨a, b⟩ in double (a == b: ‖a‖², reading it once), for a CPU float/double
// contiguous pair of one dtype and size; empty for any other.
std::optional<double> FusedDot(const at::Tensor& a, const at::Tensor& b);

// Which loop the fused sums take on this CPU: "avx2" or "portable" (the same
// bits either way; USAM_PORTABLE_SUMS=1 forces the portable one).
const char* FusedSumsPath();

struct SgdParams {
  double lr, momentum, dampening, weightDecay;
  bool nesterov, first;
};

// PyTorch's SGD: d = g + wd·w; b = first ? d : μ·b + (1−dampening)·d;
// w −= lr·(nesterov ? d + μ·b : b)   (momentum 0: w −= lr·d).
// With `from` (same layout as w), the step starts from those weights instead
// of w's: w = from − lr·(...), d = g + wd·from, bit for bit what copying
// `from` into w and then stepping gives, in one pass instead of two (a
// sharpness-aware step restores w0 that way: its w is still perturbed).
void FusedSgd(at::Tensor& w, const at::Tensor& g, at::Tensor& buf, const SgdParams& p, const at::Tensor* from = nullptr);

}  // namespace usam
