// The JavaScript spec read into the plain structs of spec.h (spec.cc). The
// native surface is exported to JS as is, so these are the checks every
// spec meets, with errors that name the field ("spec.layers[2].inFeatures").
#pragma once
#include "pch.h"
#include "spec.h"

namespace usam {

// {input, layers, loss?}
NetworkSpec ParseNetworkSpec(const Napi::Object& spec);
// {type: 'cross-entropy' | 'mse' | 'nll' | 'bce-with-logits' | 'huber', labelSmoothing?, delta?};
// `where` names it in errors.
LossSpec ParseLossSpec(const Napi::Value& loss, const std::string& where);

}  // namespace usam
