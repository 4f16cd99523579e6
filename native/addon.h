// Per-environment state of the addon (one per Node thread that loads it).
#pragma once
#include "pch.h"

namespace usam {

struct AddonData {
  Napi::FunctionReference tensor;
  Napi::FunctionReference model;
  Napi::FunctionReference generator;
};

inline AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace usam
