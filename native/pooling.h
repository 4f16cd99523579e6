// Max pooling's CPU kernels for NCHW float/double tensors. ATen's CPU
// kernel for NCHW max pooling with indices (cpu_max_pool, LibTorch 1.13 and
// 2.13) spends 12–25 ns an output on branch mispredictions: 16% of the
// benchmark CNN's forward-backward on 2.13 (perf), and 19.8 ms for the
// forward of its first pooling layer alone in PyTorch 2.13 (one thread,
// [128, 32, 28, 28] → 14 × 14). These loops give
// the same outputs and indices as ATen's, bit for bit (the first maximum of
// a window in row-major order wins, a NaN wins over any number and a later
// NaN over an earlier one), and the same input gradient.
#pragma once
#include "core.h"

#include <utility>
#include <vector>

namespace usam {

struct MaxPoolShape {
  std::vector<int64_t> kernel, stride, padding;  // [h, w] each; dilation 1, floor mode
};

// Whether the kernels take x: 4-D, CPU, float or double, contiguous (NCHW).
bool MaxPoolKernelTakes(const at::Tensor& x);

// (y, indices) as at::max_pool2d_with_indices(x, kernel, stride, padding):
// y [N, C, OH, OW], indices int64 into each H·W plane.
std::pair<at::Tensor, at::Tensor> MaxPoolWithIndices(const at::Tensor& x, const MaxPoolShape& s);

// ∂x from ∂y: each output's gradient added at its index (overlapping
// windows add in output order), as at::max_pool2d_with_indices_backward.
at::Tensor MaxPoolBackward(const at::Tensor& gy, const at::Tensor& indices, at::IntArrayRef inputSizes);

// max_pool2d for a first-order pass: these kernels under autograd (the
// backward is the scatter above, not differentiable again: passes that
// differentiate twice keep ATen's max_pool2d).
at::Tensor MaxPoolOnce(const at::Tensor& x, const MaxPoolShape& s);

}  // namespace usam
