#!/usr/bin/env bash
# Makes a Python virtual environment with PyTorch's own LibTorch, from pip's
# local wheel folders (no index is reachable here, so no retries):
#   .ci/torch-venv.sh cpu  DIR   torch 2.13.0+cpu
#   .ci/torch-venv.sh cuda DIR   torch 2.14.1 (CUDA 13) and the nvidia-* wheels it loads
# torch 2.14.1's metadata asks for cuda-bindings, which is not in the wheel
# folders, so the CUDA torch goes in --no-deps with its libraries named.
set -euo pipefail
flavour=${1:?usage: torch-venv.sh cpu|cuda DIR}
dir=${2:?usage: torch-venv.sh cpu|cuda DIR}
python=${PYTHON:-python3}
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c 'import torch' 2>/dev/null; then
  echo "torch-venv: $dir already has torch $("$dir/bin/python" -c 'import torch; print(torch.__version__)')"
  exit 0
fi
"$python" -m venv "$dir"
pip=("$dir/bin/python" -m pip install --retries 0 --timeout 5 --quiet --no-cache-dir --disable-pip-version-check)
# pip's configured local indexes lack a folder for most names and say so once per name
quiet() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
case "$flavour" in
  cpu)
    quiet "${pip[@]}" 'torch==2.13.0+cpu' numpy safetensors ;;
  cuda)
    quiet "${pip[@]}" typing-extensions filelock sympy networkx jinja2 fsspec numpy safetensors
    quiet "${pip[@]}" --no-deps 'torch==2.14.1' \
      nvidia-cuda-runtime nvidia-cublas nvidia-cudnn-cu13 nvidia-nccl-cu13 nvidia-cusparse nvidia-cufft \
      nvidia-curand nvidia-cusolver nvidia-nvjitlink nvidia-cusparselt-cu13 nvidia-nvshmem-cu13 \
      nvidia-cufile nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-nvtx ;;
  *) echo "torch-venv: flavour must be cpu or cuda, not '$flavour'" >&2; exit 2 ;;
esac
echo "torch-venv: $dir has torch $("$dir/bin/python" -c 'import torch; print(torch.__version__)')"
