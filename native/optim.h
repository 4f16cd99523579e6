// Base optimizer steps over the flat parameter buffer, with PyTorch's
// semantics (torch.optim.SGD / Adam / AdamW, single-tensor code path).
#pragma once
#include "pch.h"

namespace usam {
Napi::Object DefineOptim(Napi::Env env);
}
