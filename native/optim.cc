#include "optim.h"

#include "args.h"
#include "fused.h"
#include "tensor.h"

namespace usam {

namespace {

void CheckState(const at::Tensor& param, const at::Tensor& t, const char* name) {
  CheckSameLayout(param, "param", t, name);
}

// The optional `from` of both steps: the weights the step starts from (w0
// of a sharpness-aware step, whose param still holds a perturbed w), written
// as param's new value in the same pass; absent or undefined: param itself.
const at::Tensor* FromArg(const Napi::CallbackInfo& info, size_t i, const at::Tensor& param) {
  if (info.Length() <= i || info[i].IsUndefined()) return nullptr;
  auto& from = TensorWrap::Arg(info, i, "from");
  CheckState(param, from, "from");
  return &from;
}

// sgdStep(param, grad, momentumBuffer, {lr, momentum, dampening, weightDecay, nesterov, first}, from?)
Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  auto& w = TensorWrap::Arg(info, 0, "param");
  auto& g = TensorWrap::Arg(info, 1, "grad");
  auto& buf = TensorWrap::Arg(info, 2, "momentumBuffer");
  auto o = ObjectArg(info, 3, "options");
  CheckState(w, g, "grad");
  CheckState(w, buf, "momentumBuffer");
  double lr = NumberField(o, "lr", "sgd"), momentum = NumberField(o, "momentum", "sgd", 0.0);
  double dampening = NumberField(o, "dampening", "sgd", 0.0), wd = NumberField(o, "weightDecay", "sgd", 0.0);
  bool nesterov = BoolField(o, "nesterov", "sgd", false), first = BoolField(o, "first", "sgd", false);
  FusedSgd(w, g, buf, {lr, momentum, dampening, wd, nesterov, first}, FromArg(info, 4, w));
  return info.Env().Undefined();
}

// adamStep(param, grad, expAvg, expAvgSq, {lr, beta1, beta2, eps, weightDecay, decoupled, step}, from?)
// `step` counts from 1; `decoupled` selects AdamW's weight decay.
Napi::Value AdamStep(const Napi::CallbackInfo& info) {
  auto& w = TensorWrap::Arg(info, 0, "param");
  auto& g = TensorWrap::Arg(info, 1, "grad");
  auto& m = TensorWrap::Arg(info, 2, "expAvg");
  auto& v = TensorWrap::Arg(info, 3, "expAvgSq");
  auto o = ObjectArg(info, 4, "options");
  CheckState(w, g, "grad");
  CheckState(w, m, "expAvg");
  CheckState(w, v, "expAvgSq");
  double lr = NumberField(o, "lr", "adam"), b1 = NumberField(o, "beta1", "adam"), b2 = NumberField(o, "beta2", "adam");
  double eps = NumberField(o, "eps", "adam"), wd = NumberField(o, "weightDecay", "adam", 0.0);
  bool decoupled = BoolField(o, "decoupled", "adam", false);
  int64_t step = IntField(o, "step", "adam", 1);
  const at::Tensor* from = FromArg(info, 5, w);
  at::NoGradGuard ng;
  if (from) w.copy_(*from);  // ATen's ops below read w: start it at `from`
  at::Tensor grad = g;
  if (wd != 0) {
    if (decoupled)
      w.mul_(1.0 - lr * wd);
    else
      grad = g.add(w, wd);
  }
  m.mul_(b1).add_(grad, 1.0 - b1);
  v.mul_(b2).addcmul_(grad, grad, 1.0 - b2);
  double bc1 = 1.0 - std::pow(b1, static_cast<double>(step));
  double bc2 = 1.0 - std::pow(b2, static_cast<double>(step));
  at::Tensor denom = (v.sqrt() / std::sqrt(bc2)).add_(eps);
  w.addcdiv_(m, denom, -lr / bc1);
  return info.Env().Undefined();
}

}  // namespace

Napi::Object DefineOptim(Napi::Env env) {
  auto o = Napi::Object::New(env);
  o.Set("sgdStep", Napi::Function::New(env, &GuardFn<&SgdStep>, "sgdStep"));
  o.Set("adamStep", Napi::Function::New(env, &GuardFn<&AdamStep>, "adamStep"));
  return o;
}

}  // namespace usam
