#include "pooling.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace usam {

namespace {

int64_t OutSize(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

// One output: ATen's cpu_max_pool loop (initial index the window's first
// in-range element, `val > max || isnan(val)`), over raw pointers.
template <typename T>
void PoolWindow(const T* in, int64_t H, int64_t W, int64_t oh, int64_t ow, const MaxPoolShape& s, T& out, int64_t& ind) {
  int64_t ih0 = oh * s.stride[0] - s.padding[0], ih1 = std::min(ih0 + s.kernel[0], H);
  int64_t iw0 = ow * s.stride[1] - s.padding[1], iw1 = std::min(iw0 + s.kernel[1], W);
  ih0 = std::max<int64_t>(ih0, 0);
  iw0 = std::max<int64_t>(iw0, 0);
  int64_t maxIndex = ih0 * W + iw0;
  T maxVal = -std::numeric_limits<T>::infinity();
  for (int64_t ih = ih0; ih < ih1; ++ih)
    for (int64_t iw = iw0; iw < iw1; ++iw) {
      const int64_t index = ih * W + iw;
      const T val = in[index];
      if (val > maxVal || std::isnan(val)) {
        maxVal = val;
        maxIndex = index;
      }
    }
  out = maxVal;
  ind = maxIndex;
}

#if defined(__GNUC__) && !defined(__clang__)
// The common 2×2 window, stride 2, no padding, in float: four outputs at a
// time from columns c..c+7 of the window's two rows, split into even and odd
// columns, with PoolWindow's comparisons in its order as masks and blends
// (GCC's vector extensions: SSE2 on baseline x86-64). On data a branch per
// comparison is a coin flip: ATen's loop and a scalar one here both spent
// ≈ 12–25 ns an output on mispredictions.
using f4 = float __attribute__((vector_size(16)));
using i4 = int32_t __attribute__((vector_size(16)));

inline f4 Load4(const float* p) {
  f4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void Take4(f4 v, i4 index, f4& m, i4& at) {
  const i4 take = (v > m) | (v != v);  // v != v: v is NaN
  m = take ? v : m;
  at = take ? index : at;
}

// Outputs [0, 4·⌊OW/4⌋) of row oh; returns how many it wrote. Starting from
// the window's first element is PoolWindow's start: −∞ < it unless it is
// −∞ or NaN, and either is kept there too.
inline int64_t PoolRow2x2(const float* in, float* out, int64_t* ind, int64_t oh, int64_t W, int64_t OW) {
  const i4 even = {0, 2, 4, 6}, odd = {1, 3, 5, 7};
  const float* r0 = in + 2 * oh * W;
  const float* r1 = r0 + W;
  int64_t ow = 0;
  for (; ow + 4 <= OW; ow += 4) {
    const int64_t c = 2 * ow;
    const f4 a0 = Load4(r0 + c), a1 = Load4(r0 + c + 4), b0 = Load4(r1 + c), b1 = Load4(r1 + c + 4);
    const i4 at0 = static_cast<int32_t>(2 * oh * W + c) + even;  // plane indices fit int32 (the caller checks)
    f4 m = __builtin_shuffle(a0, a1, even);
    i4 at = at0;
    Take4(__builtin_shuffle(a0, a1, odd), at0 + 1, m, at);
    Take4(__builtin_shuffle(b0, b1, even), at0 + static_cast<int32_t>(W), m, at);
    Take4(__builtin_shuffle(b0, b1, odd), at0 + static_cast<int32_t>(W + 1), m, at);
    std::memcpy(out + oh * OW + ow, &m, sizeof m);
    for (int j = 0; j < 4; ++j) ind[oh * OW + ow + j] = at[j];
  }
  return ow;
}
#endif

template <typename T>
void PoolAll(const at::Tensor& x, at::Tensor& y, at::Tensor& idx, const MaxPoolShape& s) {
  const int64_t H = x.size(2), W = x.size(3), OH = y.size(2), OW = y.size(3);
  const T* in = x.data_ptr<T>();
  T* out = y.data_ptr<T>();
  int64_t* ind = idx.data_ptr<int64_t>();
  const bool twoByTwo = s.kernel[0] == 2 && s.kernel[1] == 2 && s.stride[0] == 2 && s.stride[1] == 2 && s.padding[0] == 0 && s.padding[1] == 0;
  [[maybe_unused]] const bool vectorRows = std::is_same_v<T, float> && twoByTwo && H * W < (int64_t{1} << 31);
  at::parallel_for(0, x.size(0) * x.size(1), 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const T* pin = in + plane * H * W;
      T* pout = out + plane * OH * OW;
      int64_t* pind = ind + plane * OH * OW;
      for (int64_t oh = 0; oh < OH; ++oh) {
        int64_t ow = 0;
#if defined(__GNUC__) && !defined(__clang__)
        if constexpr (std::is_same_v<T, float>)
          if (vectorRows) ow = PoolRow2x2(pin, pout, pind, oh, W, OW);
#endif
        for (; ow < OW; ++ow) PoolWindow<T>(pin, H, W, oh, ow, s, pout[oh * OW + ow], pind[oh * OW + ow]);
      }
    }
  });
}

template <typename T>
void ScatterAll(const at::Tensor& gy, const at::Tensor& idx, at::Tensor& gx) {
  const int64_t planeIn = gx.size(2) * gx.size(3), planeOut = gy.size(2) * gy.size(3);
  const T* g = gy.data_ptr<T>();
  const int64_t* ind = idx.data_ptr<int64_t>();
  T* dx = gx.data_ptr<T>();
  at::parallel_for(0, gy.size(0) * gy.size(1), 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      T* d = dx + plane * planeIn;
      const T* gp = g + plane * planeOut;
      const int64_t* ip = ind + plane * planeOut;
      for (int64_t k = 0; k < planeOut; ++k) d[ip[k]] += gp[k];
    }
  });
}

struct MaxPoolFunction : public torch::autograd::Function<MaxPoolFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, std::vector<int64_t> kernel,
                            std::vector<int64_t> stride, std::vector<int64_t> padding) {
    auto [y, idx] = MaxPoolWithIndices(x, {kernel, stride, padding});
    ctx->save_for_backward({idx});
    ctx->saved_data["sizes"] = x.sizes().vec();
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    at::Tensor idx = ctx->get_saved_variables()[0];
    std::vector<int64_t> sizes = ctx->saved_data["sizes"].toIntVector();
    return {MaxPoolBackward(grads[0], idx, sizes), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool MaxPoolKernelTakes(const at::Tensor& x) {
  return x.dim() == 4 && x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble) &&
         x.is_contiguous();
}

std::pair<at::Tensor, at::Tensor> MaxPoolWithIndices(const at::Tensor& x, const MaxPoolShape& s) {
  const int64_t OH = OutSize(x.size(2), s.kernel[0], s.stride[0], s.padding[0]);
  const int64_t OW = OutSize(x.size(3), s.kernel[1], s.stride[1], s.padding[1]);
  at::Tensor y = at::empty({x.size(0), x.size(1), OH, OW}, x.options());
  at::Tensor idx = at::empty({x.size(0), x.size(1), OH, OW}, x.options().dtype(at::kLong));
  at::NoGradGuard ng;
  if (x.scalar_type() == at::kFloat) PoolAll<float>(x, y, idx, s);
  else PoolAll<double>(x, y, idx, s);
  return {y, idx};
}

at::Tensor MaxPoolBackward(const at::Tensor& gy, const at::Tensor& indices, at::IntArrayRef inputSizes) {
  at::NoGradGuard ng;
  at::Tensor g = gy.contiguous();
  at::Tensor gx = at::zeros(inputSizes, g.options());
  if (g.scalar_type() == at::kFloat) ScatterAll<float>(g, indices, gx);
  else ScatterAll<double>(g, indices, gx);
  return gx;
}

at::Tensor MaxPoolOnce(const at::Tensor& x, const MaxPoolShape& s) {
  return MaxPoolFunction::apply(x, s.kernel, s.stride, s.padding);
}

}  // namespace usam
