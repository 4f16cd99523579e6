// TorchScript modules (torch.jit.save, scripted or traced) as the network
// behind a model. Only this file's .cc includes the TorchScript headers
// (heavy to compile); the rest of the addon sees this interface.
#pragma once
#include "core.h"

namespace usam {

class ScriptModule {
 public:
  // Loads the file onto `device`; a clear error for a missing or damaged
  // file or one LibTorch cannot read.
  static std::shared_ptr<ScriptModule> Load(const std::string& path, const c10::Device& device);
  virtual ~ScriptModule() = default;
  // named_parameters() and named_buffers() of the whole module tree, in
  // PyTorch's order and with PyTorch's state_dict names; the tensors are the
  // module's own (set_data() on them re-points the module).
  virtual std::vector<std::pair<std::string, at::Tensor>> Parameters() = 0;
  virtual std::vector<std::pair<std::string, at::Tensor>> Buffers() = 0;
  virtual void Train(bool on) = 0;
  // forward(x); the module must return one tensor.
  virtual at::Tensor Forward(const at::Tensor& x) = 0;
};

}  // namespace usam
