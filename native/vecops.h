// Fused operations on flat vectors (parameters, gradients, directions): each
// is one native call over P numbers, whatever the architecture.
#pragma once
#include "pch.h"

namespace usam {
Napi::Object DefineVecOps(Napi::Env env);
}
