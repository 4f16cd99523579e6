#include "pooling.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace usam {

namespace {

int64_t OutSize(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

// One H×W plane: ATen's cpu_max_pool loop (initial index the window's first
// in-range element, `val > max || isnan(val)`), over raw pointers.
template <typename T>
void PoolPlane(const T* in, T* out, int64_t* ind, int64_t H, int64_t W, int64_t OH, int64_t OW, const MaxPoolShape& s) {
  const int64_t kH = s.kernel[0], kW = s.kernel[1], sH = s.stride[0], sW = s.stride[1], pH = s.padding[0], pW = s.padding[1];
  for (int64_t oh = 0; oh < OH; ++oh) {
    int64_t ih0 = oh * sH - pH, ih1 = std::min(ih0 + kH, H);
    ih0 = std::max<int64_t>(ih0, 0);
    for (int64_t ow = 0; ow < OW; ++ow) {
      int64_t iw0 = ow * sW - pW, iw1 = std::min(iw0 + kW, W);
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
      out[oh * OW + ow] = maxVal;
      ind[oh * OW + ow] = maxIndex;
    }
  }
}

// The common 2×2 window, stride 2, no padding: two rows at a time, the same
// comparisons in the same order as PoolPlane, as selects rather than
// branches (on data a branch per comparison is a coin flip: ATen's loop and
// a branching one here both spent ≈ 12–25 ns an output on mispredictions).
template <typename T>
inline void Take(T v, int64_t index, T& m, int64_t& at) {
  const bool take = (v > m) | (v != v);  // v != v: v is NaN
  m = take ? v : m;
  at = take ? index : at;
}

#if defined(__GNUC__) && !defined(__clang__)
// Four outputs at a time in float: columns c..c+7 of the window's two rows,
// split into even and odd columns, then the same three Takes as masks and
// blends (GCC's vector extensions: SSE2 on baseline x86-64).
using f4 = float __attribute__((vector_size(16)));
using i4 = int32_t __attribute__((vector_size(16)));

inline f4 Load4(const float* p) {
  f4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void Take4(f4 v, i4 index, f4& m, i4& at) {
  const i4 take = (v > m) | (v != v);
  m = take ? v : m;
  at = take ? index : at;
}

inline int64_t PoolRow2x2Float(const float* r0, const float* r1, float* out, int64_t* ind, int64_t base, int64_t W, int64_t OW) {
  const i4 even = {0, 2, 4, 6}, odd = {1, 3, 5, 7};
  int64_t ow = 0;
  // indices within the plane fit in int32 (checked by the caller)
  for (; ow + 4 <= OW; ow += 4) {
    const int64_t c = 2 * ow;
    const f4 a0 = Load4(r0 + c), a1 = Load4(r0 + c + 4), b0 = Load4(r1 + c), b1 = Load4(r1 + c + 4);
    const i4 at0 = static_cast<int32_t>(base + c) + even;
    f4 m = __builtin_shuffle(a0, a1, even);
    i4 at = at0;
    Take4(__builtin_shuffle(a0, a1, odd), at0 + 1, m, at);
    Take4(__builtin_shuffle(b0, b1, even), at0 + static_cast<int32_t>(W), m, at);
    Take4(__builtin_shuffle(b0, b1, odd), at0 + static_cast<int32_t>(W + 1), m, at);
    std::memcpy(out + ow, &m, sizeof m);
    for (int j = 0; j < 4; ++j) ind[ow + j] = at[j];
  }
  return ow;
}
#endif

template <typename T>
void PoolPlane2x2(const T* in, T* out, int64_t* ind, int64_t W, int64_t OH, int64_t OW, bool narrow) {
  for (int64_t oh = 0; oh < OH; ++oh) {
    const T* r0 = in + 2 * oh * W;
    const T* r1 = r0 + W;
    const int64_t rowBase = 2 * oh * W;
    int64_t ow = 0;
#if defined(__GNUC__) && !defined(__clang__)
    if constexpr (std::is_same_v<T, float>)
      if (narrow) ow = PoolRow2x2Float(r0, r1, out + oh * OW, ind + oh * OW, rowBase, W, OW);
#endif
    for (; ow < OW; ++ow) {
      const int64_t c = 2 * ow, base = rowBase + c;
      // -inf < r0[c] unless it is -inf or NaN, and either is kept too: start from it
      T m = r0[c];
      int64_t at = base;
      Take(r0[c + 1], base + 1, m, at);
      Take(r1[c], base + W, m, at);
      Take(r1[c + 1], base + W + 1, m, at);
      out[oh * OW + ow] = m;
      ind[oh * OW + ow] = at;
    }
  }
}

template <typename T>
void PoolAll(const at::Tensor& x, at::Tensor& y, at::Tensor& idx, const MaxPoolShape& s) {
  const int64_t H = x.size(2), W = x.size(3), OH = y.size(2), OW = y.size(3);
  const T* in = x.data_ptr<T>();
  T* out = y.data_ptr<T>();
  int64_t* ind = idx.data_ptr<int64_t>();
  const bool narrow = H * W < (int64_t{1} << 31);  // plane indices as int32 in the vector loop
  const bool twoByTwo = s.kernel[0] == 2 && s.kernel[1] == 2 && s.stride[0] == 2 && s.stride[1] == 2 && s.padding[0] == 0 && s.padding[1] == 0;
  at::parallel_for(0, x.size(0) * x.size(1), 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      if (twoByTwo)
        PoolPlane2x2<T>(in + plane * H * W, out + plane * OH * OW, ind + plane * OH * OW, W, OH, OW, narrow);
      else
        PoolPlane<T>(in + plane * H * W, out + plane * OH * OW, ind + plane * OH * OW, H, W, OH, OW, s);
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
