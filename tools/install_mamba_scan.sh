#!/usr/bin/env bash
# Build mamba-ssm's selective-scan CUDA kernel (the `selective_scan_cuda` module behind mambapro's
# aggregation.scan_backend "cuda") from mamba-ssm's sdist alone, for this machine's GPU, and install it into the
# active Python environment.  Nothing else of mamba-ssm is installed: mambapro imports the kernel module directly.
#
# Usage:  bash tools/install_mamba_scan.sh [--from DIR] [--check] [MAMBA_SSM_VERSION]     (default 2.3.2.post1)
#   --from DIR  offline: DIR holds mamba_ssm-<version>.tar.gz and wheels of the build tools this environment lacks
#               (setuptools, wheel, packaging, ninja); pip runs with --no-index --find-links DIR, nothing is fetched.
#               PIP_NO_INDEX=1 with PIP_FIND_LINKS=DIR means the same.  Prepare DIR on a machine with the registry:
#                 pip download -d DIR setuptools wheel packaging ninja
#                 MAMBA_SKIP_CUDA_BUILD=TRUE pip download --no-deps --no-binary :all: --no-build-isolation \
#                     -d DIR mamba-ssm==2.3.2.post1
#   --check     the up-front checks only (torch's CUDA, a GPU or TORCH_CUDA_ARCH_LIST, nvcc and its headers)
#   env:  PYTHON                interpreter of the target environment (default: python)
#         TORCH_CUDA_ARCH_LIST  GPU architecture(s) to build, e.g. "9.0" for H100 / H200 (default: the local GPU's,
#                               from torch); set, it also builds on a machine without a GPU (then import check only)
#         MAX_JOBS              parallel compile jobs (default: number of cores)
#         CUDA_HOME             CUDA toolkit (default: found from nvcc on PATH, /usr/local/cuda, /opt/cuda)
# Needs: torch with CUDA, a visible GPU (or TORCH_CUDA_ARCH_LIST), nvcc of torch's CUDA major version (same minor
# recommended: conda-forge cuda-nvcc + cuda-cudart-dev, as environment.yml / environment-cuda12.yml install), a
# C++20 compiler, and the package registry unless --from.
# Time: 10 files for one architecture; each backward file takes minutes of one core, so run it with several cores.
# Undo: pip uninstall mambapro-selective-scan-cuda
#
# Why not `pip install mamba-ssm`: its setup fetches a prebuilt wheel from a code host, then compiles ~9 GPU
# architectures with -std=c++17, which torch >= 2.14's headers reject ("C++20 or later compatible compiler is
# required"); it also pulls transformers / triton / causal-conv1d, which the scan does not need.
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }
FROM="" CHECK_ONLY=0 VERSION=""
while [ $# -gt 0 ]; do
    case "$1" in
        --from) [ $# -ge 2 ] || die "--from needs a folder"; FROM="$2"; shift 2 ;;
        --from=*) FROM="${1#--from=}"; shift ;;
        --check) CHECK_ONLY=1; shift ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (see: bash $0 --help)" ;;
        *) VERSION="$1"; shift ;;
    esac
done
VERSION="${VERSION:-2.3.2.post1}"
PY="${PYTHON:-python}"
if [ -z "$FROM" ] && [ -n "${PIP_NO_INDEX:-}" ] && [ "${PIP_NO_INDEX}" != 0 ] && [ -n "${PIP_FIND_LINKS:-}" ]; then
    FROM="$PIP_FIND_LINKS"
fi
if [ -n "$FROM" ]; then
    [ -d "$FROM" ] || die "--from $FROM is not a folder (it should hold mamba_ssm-$VERSION.tar.gz and build-tool wheels)"
    FROM="$(cd "$FROM" && pwd)"
    PIP_SOURCE=(--no-index --find-links "$FROM")
else
    PIP_SOURCE=()
fi

# 0. Up-front checks, each failing in one line with its fix -------------------------------------------------------
TORCH_INFO="$("$PY" -c 'import os, torch
gpu = torch.cuda.is_available() if torch.version.cuda else False
arch = "%d.%d" % torch.cuda.get_device_capability() if gpu else ""
print(torch.__version__, torch.version.cuda or "none", arch or "none")' 2>/dev/null)" \
    || die "$PY cannot import torch: create the environment first (README, 'Paper scale': conda env create -f environment.yml)"
read -r TORCH_VERSION TORCH_CUDA GPU_ARCH <<<"$TORCH_INFO"
[ "$TORCH_CUDA" != none ] || die "torch $TORCH_VERSION is a CPU-only build: install a CUDA build (environment.yml for CUDA 13 drivers, environment-cuda12.yml for CUDA 12)"
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ] && [ "$GPU_ARCH" = none ]; then
    die "torch $TORCH_VERSION (CUDA $TORCH_CUDA) sees no GPU: check nvidia-smi (a driver older than CUDA $TORCH_CUDA hides it: use environment-cuda12.yml), or set TORCH_CUDA_ARCH_LIST (e.g. 9.0 for H100) to build without one"
fi
ARCH="${TORCH_CUDA_ARCH_LIST:-$GPU_ARCH}"
CUDA_MM="$(echo "$TORCH_CUDA" | cut -d. -f1-2)"  # major.minor
FIX="conda install -c conda-forge cuda-nvcc=$CUDA_MM cuda-cudart-dev=$CUDA_MM (or set CUDA_HOME to a CUDA $CUDA_MM toolkit)"
headers() {  # the folder holding cuda_runtime.h in toolkit $1 (conda-forge's CUDA >= 12 keeps it under targets/)
    local inc
    for inc in "$1/include" "$1"/targets/*/include; do
        if [ -f "$inc/cuda_runtime.h" ]; then echo "$inc"; return 0; fi
    done
    return 1
}
if [ -z "${CUDA_HOME:-}" ]; then  # the toolkit holding nvcc and its headers (nvcc on PATH may be a wrapper script)
    NVCC="$(command -v nvcc || true)"
    FIRST=""
    for dir in ${NVCC:+"$(dirname "$(dirname "$(readlink -f "$NVCC")")")"} ${CONDA_PREFIX:+"$CONDA_PREFIX"} \
               "/usr/local/cuda-$CUDA_MM" /usr/local/cuda /opt/cuda; do
        [ -x "$dir/bin/nvcc" ] || continue
        FIRST="${FIRST:-$dir}"
        if headers "$dir" >/dev/null; then CUDA_HOME="$dir"; break; fi
    done
    CUDA_HOME="${CUDA_HOME:-$FIRST}"
    [ -n "$CUDA_HOME" ] || die "no CUDA compiler (nvcc) for torch's CUDA $TORCH_CUDA: $FIX"
fi
[ -x "$CUDA_HOME/bin/nvcc" ] || die "CUDA_HOME=$CUDA_HOME has no bin/nvcc: $FIX"
export CUDA_HOME
NVCC_CUDA="$("$CUDA_HOME/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -1)"
[ -n "$NVCC_CUDA" ] || die "cannot read the version of $CUDA_HOME/bin/nvcc (nvcc --version): $FIX"
if [ "${NVCC_CUDA%%.*}" != "${TORCH_CUDA%%.*}" ]; then
    die "nvcc in $CUDA_HOME is CUDA $NVCC_CUDA but torch $TORCH_VERSION is built for CUDA $TORCH_CUDA (the major versions must match): $FIX"
fi
if [ "$NVCC_CUDA" != "$CUDA_MM" ]; then
    echo "warning: nvcc is CUDA $NVCC_CUDA, torch's CUDA is $TORCH_CUDA (torch builds it with a warning); exact match: $FIX" >&2
fi
INC="$(headers "$CUDA_HOME")" || die "no cuda_runtime.h in $CUDA_HOME: conda install -c conda-forge cuda-cudart-dev=$CUDA_MM"
if [ "$INC" != "$CUDA_HOME/include" ]; then
    export CUDA_INC_PATH="$INC"  # torch.utils.cpp_extension adds it to the C++ include path
fi
echo "== mamba-ssm $VERSION: selective_scan_cuda for arch $ARCH; torch $TORCH_VERSION (CUDA $TORCH_CUDA), nvcc $NVCC_CUDA in $CUDA_HOME${FROM:+; offline from $FROM}"
if [ "$CHECK_ONLY" = 1 ]; then
    echo "ok: the checks pass"
    exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# 1. Build tools: only those this environment lacks, from DIR when offline (never the registry then).
MISSING="$("$PY" -c 'import importlib.util as u
print(" ".join(m for m in ("setuptools", "wheel", "packaging", "ninja") if u.find_spec(m) is None))')"
if [ -n "$MISSING" ]; then
    # shellcheck disable=SC2086
    "$PY" -m pip install --quiet ${PIP_SOURCE[@]+"${PIP_SOURCE[@]}"} $MISSING \
        || die "cannot install the build tools $MISSING${FROM:+ from $FROM (put their wheels there: pip download -d $FROM $MISSING)}"
fi

# 2. The sdist: from DIR, or from the registry.  pip prepares its metadata by running its setup.py:
#    MAMBA_SKIP_CUDA_BUILD keeps that from compiling or fetching anything; --no-build-isolation lets it import torch.
if [ -n "$FROM" ]; then
    SDIST="$FROM/mamba_ssm-$VERSION.tar.gz"
    [ -f "$SDIST" ] || die "no $(basename "$SDIST") in $FROM: MAMBA_SKIP_CUDA_BUILD=TRUE pip download --no-deps --no-binary :all: --no-build-isolation -d $FROM mamba-ssm==$VERSION"
    cp "$SDIST" "$WORK/"
else
    MAMBA_SKIP_CUDA_BUILD=TRUE "$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
        -d "$WORK" "mamba-ssm==$VERSION"
fi
tar -xzf "$WORK"/mamba_ssm-*.tar.gz -C "$WORK"
mkdir "$WORK/pkg"
cp -r "$WORK"/mamba_ssm-*/csrc "$WORK/pkg/"

# 3. A setup.py for the one extension: mamba-ssm's sources and nvcc flags, -std=c++20, no -gencode list
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

# 4. Build and install into the active environment (ninja from the interpreter's bin folder).
PATH="$(dirname "$("$PY" -c 'import sys; print(sys.executable)')"):$PATH" \
TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "$PY" -m pip install --no-deps --no-build-isolation ${PIP_SOURCE[@]+"${PIP_SOURCE[@]}"} "$WORK/pkg"

# 5. Verify: the module imports and, with a GPU, one small scan runs.
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
