// Dense symmetric eigenproblems on LAPACK through LibTorch (linalg_eigh /
// linalg_eigvalsh): the full Hessian of a small model and the tridiagonal
// matrices of long Lanczos runs, where an O(n³) loop in JavaScript is slow.
#pragma once
#include "pch.h"

namespace usam {
Napi::Object DefineLinalg(Napi::Env env);
}
