#include "linalg.h"

#include "args.h"
#include "errors.h"

namespace usam {

namespace {

// symmetricEigen(a: Float64Array (n·n, row-major), n, wantVectors)
//   -> { values: Float64Array (ascending), vectors?: Float64Array (column j
//        is the eigenvector of values[j], row-major like the input) }
// Only the lower triangle is read (LAPACK's convention); the input is not
// modified. Runs on the CPU in float64 whatever the model's device.
Napi::Value SymmetricEigen(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    Fail("argument 'a' must be a Float64Array holding the n×n matrix row by row");
  auto a = info[0].As<Napi::Float64Array>();
  double nd = NumberArg(info, 1, "n");
  if (nd < 1 || nd != std::floor(nd) || nd > 65536) Fail("argument 'n' must be an integer in [1, 65536]");
  auto n = static_cast<int64_t>(nd);
  if (static_cast<int64_t>(a.ElementLength()) != n * n)
    Fail("argument 'a' has " + std::to_string(a.ElementLength()) + " entries; an n×n matrix with n = " +
         std::to_string(n) + " needs " + std::to_string(n * n));
  bool wantVectors = info.Length() > 2 && info[2].ToBoolean().Value();
  const double* data = a.Data();
  for (int64_t i = 0; i < n * n; ++i)
    if (!std::isfinite(data[i])) Fail("argument 'a' has a non-finite entry at row " + std::to_string(i / n) + ", column " + std::to_string(i % n));
  at::NoGradGuard ng;
  // a view of the JS memory, copied by LAPACK's workspace (the input stays as it was)
  at::Tensor m = at::from_blob(const_cast<double*>(data), {n, n}, at::TensorOptions().dtype(at::kDouble)).clone();
  auto toArray = [&](const at::Tensor& t) {
    at::Tensor c = t.contiguous();
    auto out = Napi::Float64Array::New(env, c.numel());
    std::memcpy(out.Data(), c.data_ptr<double>(), c.numel() * sizeof(double));
    return out;
  };
  auto result = Napi::Object::New(env);
  if (wantVectors) {
    auto [values, vectors] = at::linalg_eigh(m, "L");
    result.Set("values", toArray(values));
    result.Set("vectors", toArray(vectors));
  } else {
    result.Set("values", toArray(at::linalg_eigvalsh(m, "L")));
  }
  return result;
}

}  // namespace

Napi::Object DefineLinalg(Napi::Env env) {
  auto linalg = Napi::Object::New(env);
  linalg.Set("symmetricEigen", Napi::Function::New(env, &GuardFn<&SymmetricEigen>, "symmetricEigen"));
  return linalg;
}

}  // namespace usam
