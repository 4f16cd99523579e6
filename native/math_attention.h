// MathAttention: attention in its math form while a pass that is
// differentiated twice is recorded (derivatives.cc, gauss_newton.cc).
#pragma once
#include "core.h"

#include <mutex>

namespace usam {

// LibTorch 2.x runs scaled_dot_product_attention (TorchScript modules traced
// from nn.MultiheadAttention, transformers) through fused kernels whose
// backward has no derivative of its own (the CPU's flash attention; CUDA's
// flash, memory-efficient and cuDNN ones), so a pass differentiated twice
// would fail there. While one is recorded, the fused kernels are switched
// off and the attention takes its math form, which autograd differentiates
// like any other ops. The switches are LibTorch's process-wide ones (as
// torch.backends.cuda.enable_flash_sdp): a first-order pass that runs at the
// same moment on another thread takes the math form too.
class MathAttention {
 public:
  MathAttention() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (depth_++ > 0) return;
    auto& ctx = at::globalContext();
    flash_ = ctx.userEnabledFlashSDP();
    ctx.setSDPUseFlash(false);
#if TORCH_VERSION_MAJOR >= 2
    memEfficient_ = ctx.userEnabledMemEfficientSDP();
    ctx.setSDPUseMemEfficient(false);
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
    cudnn_ = ctx.userEnabledCuDNNSDP();
    ctx.setSDPUseCuDNN(false);
#endif
  }
  ~MathAttention() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--depth_ > 0) return;
    auto& ctx = at::globalContext();
    ctx.setSDPUseFlash(flash_);
#if TORCH_VERSION_MAJOR >= 2
    ctx.setSDPUseMemEfficient(memEfficient_);
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
    ctx.setSDPUseCuDNN(cudnn_);
#endif
  }
  MathAttention(const MathAttention&) = delete;
  MathAttention& operator=(const MathAttention&) = delete;

 private:
  static inline std::mutex mutex_;
  static inline int depth_ = 0;
  static inline bool flash_ = true, memEfficient_ = true, cudnn_ = true;
};

}  // namespace usam
