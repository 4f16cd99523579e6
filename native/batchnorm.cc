#include "batchnorm.h"

namespace usam {

namespace {

// Per-channel affine coefficients; identity without affine.
template <typename T>
struct Affine {
  const T *gamma = nullptr, *beta = nullptr, *vgamma = nullptr, *vbeta = nullptr;
  double Gamma(int64_t c) const { return gamma ? static_cast<double>(gamma[c]) : 1.0; }
  double Beta(int64_t c) const { return beta ? static_cast<double>(beta[c]) : 0.0; }
  double VGamma(int64_t c) const { return vgamma ? static_cast<double>(vgamma[c]) : 0.0; }
  double VBeta(int64_t c) const { return vbeta ? static_cast<double>(vbeta[c]) : 0.0; }
};

template <typename T>
Affine<T> AffineOf(const BatchNormDualArgs& args) {
  Affine<T> f;
  if (args.gamma.defined()) {
    f.gamma = args.gamma.data_ptr<T>();
    f.beta = args.beta.data_ptr<T>();
    f.vgamma = args.vgamma.data_ptr<T>();
    f.vbeta = args.vbeta.data_ptr<T>();
  }
  return f;
}

// The data of channel c is N blocks of S contiguous values, block n at
// (n·C + c)·S: `each` visits them in memory order.
template <typename F>
void ForChannel(int64_t n, int64_t C, int64_t S, int64_t c, F&& each) {
  for (int64_t b = 0; b < n; ++b) {
    int64_t base = (b * C + c) * S;
    for (int64_t i = 0; i < S; ++i) each(base + i);
  }
}

template <typename T>
void ForwardCpu(const at::Tensor& x, const at::Tensor& xt, const BatchNormDualArgs& args, at::Tensor& y,
                at::Tensor& yt, BatchNormDualState& st) {
  // plain locals, not a structured binding: lambdas capture them (C++17)
  const int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C);
  const double count = static_cast<double>(N * S);
  const T* px = x.data_ptr<T>();
  const T* pxt = xt.defined() ? xt.data_ptr<T>() : nullptr;
  T* py = y.data_ptr<T>();
  T* pyt = yt.defined() ? yt.data_ptr<T>() : nullptr;
  double *mean = st.mean.data_ptr<double>(), *r = st.r.data_ptr<double>(), *a = st.a.data_ptr<double>(),
         *mxt = st.meanXt.data_ptr<double>();
  const Affine<T> f = AffineOf<T>(args);
  const T* rm = args.batchStats ? nullptr : args.runningMean.data_ptr<T>();
  const T* rv = args.batchStats ? nullptr : args.runningVar.data_ptr<T>();
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      double mu, rc, ac = 0, mt = 0;
      if (args.batchStats) {
        double s = 0, stan = 0;
        ForChannel(N, C, S, c, [&](int64_t i) {
          s += px[i];
          if (pxt) stan += pxt[i];
        });
        mu = s / count;
        mt = stan / count;
        double q = 0, qt = 0;  // Σ (x − μ)², Σ (x − μ) ẋ
        ForChannel(N, C, S, c, [&](int64_t i) {
          double d = px[i] - mu;
          q += d * d;
          if (pxt) qt += d * pxt[i];
        });
        rc = 1.0 / std::sqrt(q / count + args.eps);
        ac = rc * qt / count;
      } else {
        mu = rm[c];
        rc = 1.0 / std::sqrt(static_cast<double>(rv[c]) + args.eps);
      }
      mean[c] = mu, r[c] = rc, a[c] = ac, mxt[c] = mt;
      const double g = f.Gamma(c), b = f.Beta(c), vg = f.VGamma(c), vb = f.VBeta(c);
      ForChannel(N, C, S, c, [&](int64_t i) {
        double xh = (px[i] - mu) * rc;
        py[i] = static_cast<T>(g * xh + b);
        if (pyt) {
          double xht = pxt ? rc * (pxt[i] - mt - xh * ac) : 0.0;
          pyt[i] = static_cast<T>(g * xht + vg * xh + vb);
        }
      });
    }
  });
}

template <typename T>
void BackwardCpu(const at::Tensor& g, const at::Tensor& gt, const BatchNormDualArgs& args,
                 const BatchNormDualState& st, at::Tensor& hvGamma, at::Tensor& hvBeta, at::Tensor& dx,
                 at::Tensor& dxt) {
  const at::Tensor &x = st.x, &xt = st.xt;
  // plain locals, not a structured binding: lambdas capture them (C++17)
  const int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C);
  const double count = static_cast<double>(N * S);
  const T *px = x.data_ptr<T>(), *pg = g.data_ptr<T>(), *pgt = gt.data_ptr<T>();
  const T* pxt = xt.defined() ? xt.data_ptr<T>() : nullptr;
  T* pdx = dx.defined() ? dx.data_ptr<T>() : nullptr;
  T* pdxt = dxt.defined() ? dxt.data_ptr<T>() : nullptr;
  T* hg = hvGamma.defined() ? hvGamma.data_ptr<T>() : nullptr;
  T* hb = hvBeta.defined() ? hvBeta.data_ptr<T>() : nullptr;
  const double *mean = st.mean.data_ptr<double>(), *r = st.r.data_ptr<double>(), *a = st.a.data_ptr<double>(),
               *mxt = st.meanXt.data_ptr<double>();
  const Affine<T> f = AffineOf<T>(args);
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const double mu = mean[c], rc = r[c], ac = a[c], mt = mxt[c];
      // Σ g, Σ ġ, Σ g x̂, Σ ġ x̂, Σ g R{x̂}
      double sg = 0, sgt = 0, sgx = 0, sgtx = 0, sgxt = 0;
      ForChannel(N, C, S, c, [&](int64_t i) {
        double xh = (px[i] - mu) * rc;
        sg += pg[i];
        sgt += pgt[i];
        sgx += pg[i] * xh;
        sgtx += pgt[i] * xh;
        if (pxt) sgxt += pg[i] * rc * (pxt[i] - mt - xh * ac);
      });
      if (hg) hg[c] = static_cast<T>(sgtx + sgxt);
      if (hb) hb[c] = static_cast<T>(sgt);
      if (!pdx) continue;
      const double gm = f.Gamma(c), vg = f.VGamma(c);
      // m(h), m(h x̂), m(ḣ), m(ḣ x̂ + h R{x̂}); zero with running statistics
      double mh = 0, mhx = 0, mht = 0, k = 0;
      if (args.batchStats) {
        mh = gm * sg / count;
        mhx = gm * sgx / count;
        mht = (gm * sgt + vg * sg) / count;
        k = (gm * sgtx + vg * sgx + gm * sgxt) / count;
      }
      const double rDotOverR = -ac * rc;
      ForChannel(N, C, S, c, [&](int64_t i) {
        double xh = (px[i] - mu) * rc;
        double xht = rc * (pxt[i] - mt - xh * ac);
        double h = gm * pg[i], ht = gm * pgt[i] + vg * pg[i];
        double d = rc * (h - mh - xh * mhx);
        pdx[i] = static_cast<T>(d);
        pdxt[i] = static_cast<T>(rc * (ht - mht - xht * mhx - xh * k) + rDotOverR * d);
      });
    }
  });
}

// The same two steps composed of ATen ops, for devices without the fused kernel.
struct Composite {
  std::vector<int64_t> dims, shape;
  explicit Composite(const at::Tensor& x) : dims{0}, shape(static_cast<size_t>(x.dim()), 1) {
    shape[1] = x.size(1);
    for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  }
  at::Tensor Mean(const at::Tensor& t) const { return t.mean(dims, /*keepdim=*/true); }
  at::Tensor Channel(const at::Tensor& perChannel) const { return perChannel.view(shape); }
  at::Tensor Gamma(const BatchNormDualArgs& a, const at::Tensor& like) const {
    return a.gamma.defined() ? Channel(a.gamma) : at::ones({1}, like.options());
  }
};

Dual ForwardComposite(const Dual& x, const BatchNormDualArgs& args, BatchNormDualState& st) {
  Composite k(x.value);
  at::Tensor mu, r;
  if (args.batchStats) {
    mu = k.Mean(x.value);
    at::Tensor xc = x.value - mu;
    r = (k.Mean(xc * xc) + args.eps).rsqrt();
  } else {
    mu = k.Channel(args.runningMean);
    r = (k.Channel(args.runningVar) + args.eps).rsqrt();
  }
  at::Tensor xh = (x.value - mu) * r;
  at::Tensor a = at::zeros_like(r), mt = at::zeros_like(r), xht;
  if (x.tangent.defined()) {
    if (args.batchStats) {
      a = k.Mean(xh * x.tangent);
      mt = k.Mean(x.tangent);
    }
    xht = (x.tangent - mt - xh * a) * r;
  }
  st.mean = mu.reshape(-1), st.r = r.reshape(-1), st.a = a.reshape(-1), st.meanXt = mt.reshape(-1);
  if (!args.gamma.defined()) return {xh, xht};
  at::Tensor yt = xh * k.Channel(args.vgamma) + k.Channel(args.vbeta);
  if (xht.defined()) yt.add_(xht * k.Channel(args.gamma));
  return {xh * k.Channel(args.gamma) + k.Channel(args.beta), yt};
}

Dual BackwardComposite(const Dual& g, const BatchNormDualArgs& args, const BatchNormDualState& st,
                       at::Tensor& hvGamma, at::Tensor& hvBeta) {
  Composite k(st.x);
  at::Tensor r = k.Channel(st.r), a = k.Channel(st.a);
  at::Tensor xh = (st.x - k.Channel(st.mean)) * r;
  at::Tensor xht = st.xt.defined() ? (st.xt - k.Channel(st.meanXt) - xh * a) * r : at::Tensor();
  if (args.gamma.defined()) {
    at::Tensor sg = g.tangent * xh;
    if (xht.defined()) sg.add_(g.value * xht);
    hvGamma.copy_(sg.sum(k.dims));
    hvBeta.copy_(g.tangent.sum(k.dims));
  }
  if (!xht.defined()) return {};
  at::Tensor gm = k.Gamma(args, st.x);
  at::Tensor h = g.value * gm;
  at::Tensor ht = g.tangent * gm;
  if (args.gamma.defined()) ht.add_(g.value * k.Channel(args.vgamma));
  if (!args.batchStats) return {h * r, ht * r};
  at::Tensor mhx = k.Mean(h * xh);
  at::Tensor dx = (h - k.Mean(h) - xh * mhx) * r;
  at::Tensor dxt = (ht - k.Mean(ht) - xht * mhx - xh * k.Mean(ht * xh + h * xht)) * r - a * r * dx;
  return {dx, dxt};
}

}  // namespace

Dual BatchNormForwardDual(const Dual& x, const BatchNormDualArgs& args, BatchNormDualState& st) {
  st.x = x.value.contiguous();
  st.xt = x.tangent.defined() ? x.tangent.contiguous() : at::Tensor();
  if (!st.x.is_cpu()) return ForwardComposite({st.x, st.xt}, args, st);
  auto perChannel = at::TensorOptions().dtype(at::kDouble);
  int64_t C = st.x.size(1);
  st.mean = at::empty({C}, perChannel), st.r = at::empty({C}, perChannel);
  st.a = at::empty({C}, perChannel), st.meanXt = at::empty({C}, perChannel);
  at::Tensor y = at::empty_like(st.x);
  at::Tensor yt = st.xt.defined() || args.gamma.defined() ? at::empty_like(st.x) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(st.x.scalar_type(), "BatchNormForwardDual", [&] { ForwardCpu<scalar_t>(st.x, st.xt, args, y, yt, st); });
  return {y, yt};
}

Dual BatchNormBackwardDual(const Dual& g, const BatchNormDualArgs& args, const BatchNormDualState& st,
                           at::Tensor& hvGamma, at::Tensor& hvBeta) {
  if (!st.x.is_cpu()) return BackwardComposite(g, args, st, hvGamma, hvBeta);
  at::Tensor gv = g.value.contiguous(), gt = g.tangent.contiguous();
  at::Tensor dx, dxt;
  if (st.xt.defined()) dx = at::empty_like(st.x), dxt = at::empty_like(st.x);
  // the kernel writes per-channel results through raw pointers into
  // hvGamma and hvBeta: contiguous views of the flat H·v (narrow() of a flat
  // vector), undefined without affine
  AT_DISPATCH_FLOATING_TYPES(st.x.scalar_type(), "BatchNormBackwardDual",
                             [&] { BackwardCpu<scalar_t>(gv, gt, args, st, hvGamma, hvBeta, dx, dxt); });
  if (!dx.defined()) return {};
  return {dx, dxt};
}

}  // namespace usam
