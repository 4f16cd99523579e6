#include "vecops.h"

#include "args.h"
#include "fused.h"
#include "tensor.h"

namespace usam {

namespace {

void CheckFloat(const at::Tensor& t, const char* name) {
  if (!at::isFloatingType(t.scalar_type()))
    Fail(std::string("argument '") + name + "' must be a float32 or float64 tensor, got " + DTypeName(t.scalar_type()));
}

// y += a * x
Napi::Value Axpy(const Napi::CallbackInfo& info) {
  auto& y = TensorWrap::Arg(info, 0, "y");
  double a = NumberArg(info, 1, "a");
  auto& x = TensorWrap::Arg(info, 2, "x");
  CheckFloat(y, "y");
  CheckSameLayout(y, "y", x, "x");
  at::NoGradGuard ng;
  y.add_(x, a);
  return info.Env().Undefined();
}

// x *= a
Napi::Value Scale(const Napi::CallbackInfo& info) {
  auto& x = TensorWrap::Arg(info, 0, "x");
  double a = NumberArg(info, 1, "a");
  CheckFloat(x, "x");
  at::NoGradGuard ng;
  x.mul_(a);
  return info.Env().Undefined();
}

// x += c (every element)
Napi::Value AddScalar(const Napi::CallbackInfo& info) {
  auto& x = TensorWrap::Arg(info, 0, "x");
  double c = NumberArg(info, 1, "c");
  CheckFloat(x, "x");
  at::NoGradGuard ng;
  x.add_(c);
  return info.Env().Undefined();
}

Napi::Value Fill(const Napi::CallbackInfo& info) {
  auto& x = TensorWrap::Arg(info, 0, "x");
  double c = NumberArg(info, 1, "value");
  at::NoGradGuard ng;
  x.fill_(c);
  return info.Env().Undefined();
}

Napi::Value Dot(const Napi::CallbackInfo& info) {
  auto& a = TensorWrap::Arg(info, 0, "a");
  auto& b = TensorWrap::Arg(info, 1, "b");
  CheckFloat(a, "a");
  CheckSameLayout(a, "a", b, "b");
  at::NoGradGuard ng;
  // on the CPU in double lanes (fused.h), else ATen's (float32 accumulation for float32)
  if (auto d = FusedDot(a, b)) return Napi::Number::New(info.Env(), *d);
  return Napi::Number::New(info.Env(), at::dot(a.reshape(-1), b.reshape(-1)).item<double>());
}

Napi::Value Norm(const Napi::CallbackInfo& info) {
  auto& x = TensorWrap::Arg(info, 0, "x");
  CheckFloat(x, "x");
  at::NoGradGuard ng;
  if (auto squares = FusedDot(x, x)) return Napi::Number::New(info.Env(), std::sqrt(*squares));
  return Napi::Number::New(info.Env(), x.norm().item<double>());
}

Napi::Value Sum(const Napi::CallbackInfo& info) {
  auto& x = TensorWrap::Arg(info, 0, "x");
  at::NoGradGuard ng;
  return Napi::Number::New(info.Env(), x.sum().item<double>());
}

// dst = src
Napi::Value Copy(const Napi::CallbackInfo& info) {
  auto& dst = TensorWrap::Arg(info, 0, "dst");
  auto& src = TensorWrap::Arg(info, 1, "src");
  CheckSameLayout(dst, "dst", src, "src");
  at::NoGradGuard ng;
  dst.copy_(src);
  return info.Env().Undefined();
}

// dst = |src|
Napi::Value Abs(const Napi::CallbackInfo& info) {
  auto& dst = TensorWrap::Arg(info, 0, "dst");
  auto& src = TensorWrap::Arg(info, 1, "src");
  CheckFloat(dst, "dst");
  CheckSameLayout(dst, "dst", src, "src");
  at::NoGradGuard ng;
  at::abs_out(dst, src);
  return info.Env().Undefined();
}

// dst = a ⊙ b
Napi::Value Mul(const Napi::CallbackInfo& info) {
  auto& dst = TensorWrap::Arg(info, 0, "dst");
  auto& a = TensorWrap::Arg(info, 1, "a");
  auto& b = TensorWrap::Arg(info, 2, "b");
  CheckFloat(dst, "dst");
  CheckSameLayout(dst, "dst", a, "a");
  CheckSameLayout(dst, "dst", b, "b");
  at::NoGradGuard ng;
  at::mul_out(dst, a, b);
  return info.Env().Undefined();
}

// dst = Σ_i c_i · x_i in one fused pass; returns the sum of dst (NaN or
// ±Inf when any element is). dst may alias tensors[0] only.
Napi::Value Combine(const Napi::CallbackInfo& info) {
  auto& dst = TensorWrap::Arg(info, 0, "dst");
  CheckFloat(dst, "dst");
  if (!info[1].IsArray() || !info[2].IsArray())
    Fail("combine(dst, coefficients, tensors): 'coefficients' and 'tensors' must be arrays");
  auto coefs = info[1].As<Napi::Array>();
  auto xs = info[2].As<Napi::Array>();
  if (coefs.Length() != xs.Length() || xs.Length() == 0)
    Fail("combine: 'coefficients' (" + std::to_string(coefs.Length()) + ") and 'tensors' (" +
         std::to_string(xs.Length()) + ") must have the same, non-zero length");
  std::vector<double> c(coefs.Length());
  std::vector<at::Tensor> t(xs.Length());
  for (uint32_t i = 0; i < xs.Length(); ++i) {
    auto v = coefs.Get(i);
    if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue()))
      Fail("combine: coefficients[" + std::to_string(i) + "] must be a finite number");
    c[i] = v.As<Napi::Number>().DoubleValue();
    std::string name = "tensors[" + std::to_string(i) + "]";
    t[i] = TensorWrap::From(xs.Get(i), name);
    CheckSameLayout(dst, "dst", t[i], name.c_str());
    if (i > 0 && t[i].is_same(dst)) Fail("combine: dst may alias only tensors[0]");
  }
  return Napi::Number::New(info.Env(), FusedCombine(dst, c, t));
}

// shiftDot(dst, base, scale, dir, probe?, keep?): dst = base + scale·dir and
// returns ⟨probe, dir⟩ (accumulated in double; 0 without a probe), in one pass. dst may alias
// base only. With `keep`, keep = base too, in the same pass (a perturbation
// written over the weights that keeps them: no copy pass of its own).
Napi::Value ShiftDot(const Napi::CallbackInfo& info) {
  auto& dst = TensorWrap::Arg(info, 0, "dst");
  auto& base = TensorWrap::Arg(info, 1, "base");
  double scale = NumberArg(info, 2, "scale");
  auto& dir = TensorWrap::Arg(info, 3, "dir");
  auto optional = [&](size_t i, const char* name) { return info.Length() > i && !info[i].IsUndefined() ? &TensorWrap::Arg(info, i, name) : nullptr; };
  at::Tensor* probe = optional(4, "probe");
  at::Tensor* keep = optional(5, "keep");
  CheckFloat(dst, "dst");
  CheckSameLayout(dst, "dst", base, "base");
  CheckSameLayout(dst, "dst", dir, "dir");
  if (probe) CheckSameLayout(dst, "dst", *probe, "probe");
  if (keep) CheckSameLayout(dst, "dst", *keep, "keep");
  if (!std::isfinite(scale)) Fail("shiftDot: argument 'scale' must be a finite number");
  if (dir.is_same(dst) || (probe && probe->is_same(dst))) Fail("shiftDot: dst may alias only base");
  if (keep && (keep->is_same(dst) || keep->is_same(base) || keep->is_same(dir) || (probe && keep->is_same(*probe))))
    Fail("shiftDot: keep must be a tensor of its own (it receives base)");
  return Napi::Number::New(info.Env(), FusedShiftDot(dst, base, scale, dir, probe, keep));
}

Napi::Value AllFinite(const Napi::CallbackInfo& info) {
  auto& x = TensorWrap::Arg(info, 0, "x");
  at::NoGradGuard ng;
  // One reduction instead of isfinite(x).all() (8× faster): a double sum is
  // finite exactly when every element is (NaN propagates, ±Inf stays or
  // becomes NaN, and float32 values cannot overflow a double sum; float64
  // values summing past ~1.8e308 would also read as non-finite).
  return Napi::Boolean::New(info.Env(), std::isfinite(x.sum(at::kDouble).item<double>()));
}

}  // namespace

Napi::Object DefineVecOps(Napi::Env env) {
  auto ops = Napi::Object::New(env);
  ops.Set("axpy", Napi::Function::New(env, &GuardFn<&Axpy>, "axpy"));
  ops.Set("scale", Napi::Function::New(env, &GuardFn<&Scale>, "scale"));
  ops.Set("addScalar", Napi::Function::New(env, &GuardFn<&AddScalar>, "addScalar"));
  ops.Set("fill", Napi::Function::New(env, &GuardFn<&Fill>, "fill"));
  ops.Set("dot", Napi::Function::New(env, &GuardFn<&Dot>, "dot"));
  ops.Set("norm", Napi::Function::New(env, &GuardFn<&Norm>, "norm"));
  ops.Set("sum", Napi::Function::New(env, &GuardFn<&Sum>, "sum"));
  ops.Set("copy", Napi::Function::New(env, &GuardFn<&Copy>, "copy"));
  ops.Set("abs", Napi::Function::New(env, &GuardFn<&Abs>, "abs"));
  ops.Set("mul", Napi::Function::New(env, &GuardFn<&Mul>, "mul"));
  ops.Set("combine", Napi::Function::New(env, &GuardFn<&Combine>, "combine"));
  ops.Set("shiftDot", Napi::Function::New(env, &GuardFn<&ShiftDot>, "shiftDot"));
  ops.Set("allFinite", Napi::Function::New(env, &GuardFn<&AllFinite>, "allFinite"));
  return ops;
}

}  // namespace usam
