#!/usr/bin/env bash
# Build mamba-ssm's selective-scan CUDA kernel (the `selective_scan_cuda` module behind mambapro's
# aggregation.scan_backend "cuda") from PyPI's mamba-ssm sdist alone, for this machine's GPU, and install it into the
# active Python environment.  Nothing else of mamba-ssm is installed: mambapro imports the kernel module directly.
#
# Usage:  bash tools/install_mamba_scan.sh [MAMBA_SSM_VERSION]          (default 2.3.2.post1)
#   env:  PYTHON                interpreter of the target environment (default: python)
#         TORCH_CUDA_ARCH_LIST  GPU architecture(s) to build, e.g. "9.0" for H100 / H200 (default: the local GPU's,
#                               from torch); set, it also builds on a machine without a GPU (then import check only)
#         MAX_JOBS              parallel compile jobs (default: number of cores)
#         CUDA_HOME             CUDA toolkit (nvcc), major version of torch.version.cuda (default: found from nvcc)
# Needs: a visible GPU (or TORCH_CUDA_ARCH_LIST), torch with CUDA, nvcc, a C++20 compiler, the package registry.
# Time: 10 files for one architecture; each backward file takes minutes of one core, so run it with several cores.
# Undo: pip uninstall mambapro-selective-scan-cuda
#
# Why not `pip install mamba-ssm`: its setup fetches a prebuilt wheel from a code host, then compiles ~9 GPU
# architectures with -std=c++17, which torch >= 2.14's headers reject ("C++20 or later compatible compiler is
# required"); it also pulls transformers / triton / causal-conv1d, which the scan does not need.
set -euo pipefail

VERSION="${1:-2.3.2.post1}"
PY="${PYTHON:-python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PY" -c 'import os, torch, sys; sys.exit(0 if torch.version.cuda and (torch.cuda.is_available() or
os.environ.get("TORCH_CUDA_ARCH_LIST")) else "torch without CUDA, or no GPU visible and no TORCH_CUDA_ARCH_LIST")'
ARCH="${TORCH_CUDA_ARCH_LIST:-$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')}"
if [ -z "${CUDA_HOME:-}" ]; then  # the toolkit holding nvcc and cuda_runtime.h (nvcc on PATH may be a wrapper)
    NVCC="$(command -v nvcc || true)"
    for dir in ${NVCC:+"$(dirname "$(dirname "$(readlink -f "$NVCC")")")"} /usr/local/cuda /opt/cuda; do
        if [ -x "$dir/bin/nvcc" ] && [ -f "$dir/include/cuda_runtime.h" ]; then export CUDA_HOME="$dir"; break; fi
    done
fi
if [ -z "${CUDA_HOME:-}" ]; then
    echo "no CUDA toolkit (nvcc + cuda_runtime.h): install the one of torch.version.cuda, set CUDA_HOME" >&2
    exit 1
fi
echo "== mamba-ssm $VERSION: selective_scan_cuda for arch $ARCH, CUDA_HOME $CUDA_HOME"

# 1. The sdist from PyPI.  pip prepares its metadata by running its setup.py: MAMBA_SKIP_CUDA_BUILD keeps that from
#    compiling or fetching anything; --no-build-isolation lets it import torch.
"$PY" -m pip install --quiet setuptools wheel packaging ninja
MAMBA_SKIP_CUDA_BUILD=TRUE "$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
    -d "$WORK" "mamba-ssm==$VERSION"
tar -xzf "$WORK"/mamba_ssm-*.tar.gz -C "$WORK"
mkdir "$WORK/pkg"
cp -r "$WORK"/mamba_ssm-*/csrc "$WORK/pkg/"

# 2. A setup.py for the one extension: mamba-ssm's sources and nvcc flags, -std=c++20, no -gencode list
#    (TORCH_CUDA_ARCH_LIST picks the architecture).
cat > "$WORK/pkg/setup.py" <<EOF
import glob, os
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CUDAExtension

src = "csrc/selective_scan"
nvcc = ["-O3", "-std=c++20", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
        "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
        "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
        "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math", "-lineinfo"]
setup(name="mambapro-selective-scan-cuda", version="$VERSION",
      ext_modules=[CUDAExtension("selective_scan_cuda", sorted(glob.glob(f"{src}/*.cpp") + glob.glob(f"{src}/*.cu")),
                                 include_dirs=[os.path.abspath(src)],
                                 extra_compile_args={"cxx": ["-O3", "-std=c++20"], "nvcc": nvcc})],
      cmdclass={"build_ext": BuildExtension})
EOF

# 3. Build and install into the active environment (ninja from the interpreter's bin folder).
PATH="$(dirname "$("$PY" -c 'import sys; print(sys.executable)')"):$PATH" \
TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "$PY" -m pip install --no-deps --no-build-isolation "$WORK/pkg"

# 4. Verify: the module imports and, with a GPU, one small scan runs.
cd "$WORK"
"$PY" - <<'EOF'
import torch, selective_scan_cuda
print("imported:", selective_scan_cuda.__file__)
if not torch.cuda.is_available():
    print("no GPU here: import checked only")
    raise SystemExit(0)
b, d, n, L = 2, 8, 4, 16
u, dt = (torch.randn(b, d, L, device="cuda") for _ in range(2))
B, C = (torch.randn(b, 1, n, L, device="cuda") for _ in range(2))
A = -torch.rand(d, n, device="cuda")
out = selective_scan_cuda.fwd(u, dt, A, B, C, None, None, None, True)[0]
assert out.shape == (b, d, L) and torch.isfinite(out).all()
print("ok: a scan ran on", torch.cuda.get_device_name())
EOF
