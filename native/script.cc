#include "script.h"

#include "args.h"

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <fstream>

namespace usam {

namespace {

class LoadedScript : public ScriptModule {
 public:
  explicit LoadedScript(torch::jit::Module m) : module_(std::move(m)) {}
  std::vector<std::pair<std::string, at::Tensor>> Parameters() override {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& p : module_.named_parameters(/*recurse=*/true)) out.emplace_back(p.name, p.value);
    return out;
  }
  std::vector<std::pair<std::string, at::Tensor>> Buffers() override {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& b : module_.named_buffers(/*recurse=*/true)) out.emplace_back(b.name, b.value);
    return out;
  }
  void Train(bool on) override { module_.train(on); }
  at::Tensor Forward(const at::Tensor& x) override {
    // The graph executor's optimisations (profiling, then specialised and
    // fused graphs after a few runs) change the rounding with the number of
    // calls so far: a resumed run would not repeat the uninterrupted one bit
    // for bit. Run the graph as saved.
    torch::jit::GraphOptimizerEnabledGuard plain(false);
    c10::IValue out = module_.forward({x});
    if (!out.isTensor())
      Fail("the TorchScript module's forward returned " + out.tagKind() +
           ", not one tensor; the model needs forward(x) -> logits (or what the loss takes)");
    return out.toTensor();
  }

 private:
  torch::jit::Module module_;
};

}  // namespace

std::shared_ptr<ScriptModule> ScriptModule::Load(const std::string& path, const c10::Device& device) {
  if (!std::ifstream(path).good()) Fail("TorchScript file not found or not readable: " + path);
  try {
    return std::make_shared<LoadedScript>(torch::jit::load(path, device));
  } catch (const c10::Error& e) {
    Fail(path + " is not a TorchScript file this LibTorch (" + std::to_string(TORCH_VERSION_MAJOR) + "." +
         std::to_string(TORCH_VERSION_MINOR) +
         ") can load (a file from torch.jit.save, by a PyTorch no newer than it): " +
         CleanTorchMessage(e.what_without_backtrace()));
  }
}

}  // namespace usam
