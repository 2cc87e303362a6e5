"""Installation (issue 20, "An installation that works on the GPU machines people have"):
tools/install_mamba_scan.sh checks torch's CUDA against the compiler before anything is installed, and installs
offline from a folder (stand-in `python` and `nvcc` on PATH, so that no GPU, toolkit or network is needed); the
environment files and the lock of the tested versions agree."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "install_mamba_scan.sh"

# `python`: torch's answer from $FAKE_TORCH ("version cuda arch"), the build tools it lacks from $FAKE_MISSING;
# every call (and pip's CUDA_INC_PATH) is logged.  `nvcc`: release $FAKE_NVCC.
PYTHON = """#!/bin/sh
echo "python $* | CUDA_INC_PATH=${CUDA_INC_PATH:-}" | tr '\\n' ' ' >> "$LOG"; echo >> "$LOG"
case "$*" in
  *torch.version.cuda*) [ -n "$FAKE_TORCH" ] || exit 1; echo "$FAKE_TORCH" ;;
  *find_spec*) echo "$FAKE_MISSING" ;;
  *sys.executable*) echo "$0" ;;
esac
exit 0
"""
NVCC = """#!/bin/sh
echo "nvcc: NVIDIA (R) Cuda compiler driver"
echo "Cuda compilation tools, release $FAKE_NVCC, V$FAKE_NVCC.99"
"""


@pytest.fixture()
def run(stand_in_commands, tmp_path):
    """run(*args, torch="2.14.1+cu130 13.0 9.0", nvcc="13.0", missing="", **env) -> (rc, stdout, stderr, log
    lines); the stand-in toolkit is tmp_path (bin/nvcc) with its headers in include/."""
    env = stand_in_commands(python=PYTHON, nvcc=NVCC)
    for key in ("CUDA_HOME", "CONDA_PREFIX", "PIP_NO_INDEX", "PIP_FIND_LINKS", "TORCH_CUDA_ARCH_LIST", "PYTHON",
                "CUDA_INC_PATH"):
        env.pop(key, None)
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "cuda_runtime.h").write_text("/* stand-in */\n")

    def call(*args, torch="2.14.1+cu130 13.0 9.0", nvcc="13.0", missing="", **extra):
        log = Path(env["LOG"])
        log.unlink(missing_ok=True)
        r = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                           env={**env, "FAKE_TORCH": torch, "FAKE_NVCC": nvcc, "FAKE_MISSING": missing, **extra})
        lines = log.read_text().splitlines() if log.exists() else []
        return r.returncode, r.stdout, r.stderr, lines

    return call


def sdist(folder: Path, version: str = "2.3.2.post1") -> Path:
    """A stand-in mamba-ssm sdist: the csrc/selective_scan tree the script copies."""
    folder.mkdir(exist_ok=True)
    path = folder / f"mamba_ssm-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = b"// stand-in kernel source\n"
        info = tarfile.TarInfo(f"mamba_ssm-{version}/csrc/selective_scan/selective_scan.cpp")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def pip_calls(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("python -m pip")]


def test_compiler_of_another_cuda_major_fails_before_anything_is_installed(run, tmp_path):
    rc, _, err, log = run(nvcc="12.4")
    assert rc == 1 and err.count("\n") == 1, err
    assert err.startswith(f"error: nvcc in {tmp_path} is CUDA 12.4 but torch 2.14.1+cu130 is built for CUDA 13.0 "
                          "(the major versions must match): conda install -c conda-forge cuda-nvcc=13.0 "
                          "cuda-cudart-dev=13.0")
    assert pip_calls(log) == []  # before: pip installed build tools and downloaded the sdist first


def test_cuda12_torch_wants_the_cuda12_compiler(run):
    rc, _, err, _ = run("--check", torch="2.14.1+cu128 12.8 9.0", nvcc="13.0")
    assert rc == 1 and "cuda-nvcc=12.8 cuda-cudart-dev=12.8" in err
    rc, out, err, log = run("--check", torch="2.14.1+cu128 12.8 9.0", nvcc="12.8")
    assert rc == 0 and "ok: the checks pass" in out and "nvcc 12.8" in out and pip_calls(log) == []


def test_minor_version_mismatch_is_a_warning(run):
    rc, out, err, _ = run("--check", nvcc="13.1")
    assert rc == 0 and "ok: the checks pass" in out
    assert "warning: nvcc is CUDA 13.1, torch's CUDA is 13.0" in err and "cuda-nvcc=13.0" in err


@pytest.mark.parametrize("torch, message", [
    ("2.14.1+cpu none none", "torch 2.14.1+cpu is a CPU-only build: install a CUDA build (environment.yml"),
    ("2.14.1+cu130 13.0 none", "sees no GPU: check nvidia-smi (a driver older than CUDA 13.0 hides it: use "
                               "environment-cuda12.yml), or set TORCH_CUDA_ARCH_LIST"),
    ("", "cannot import torch"),
])
def test_torch_problems_are_one_line(run, torch, message):
    rc, _, err, log = run("--check", torch=torch)
    assert rc == 1 and message in err and err.count("\n") == 1 and pip_calls(log) == []


def test_missing_headers_name_the_package(run, tmp_path):
    (tmp_path / "include" / "cuda_runtime.h").unlink()
    rc, _, err, _ = run("--check", CUDA_HOME=str(tmp_path))
    assert rc == 1 and f"no cuda_runtime.h in {tmp_path}: conda install -c conda-forge cuda-cudart-dev=13.0" in err


def test_offline_from_a_folder_never_asks_the_registry(run, tmp_path):
    wheels = tmp_path / "wheels"
    sdist(wheels)
    rc, out, err, log = run("--from", str(wheels), missing="ninja wheel", TORCH_CUDA_ARCH_LIST="9.0")
    assert rc == 0, err
    assert f"offline from {wheels}" in out
    calls = pip_calls(log)
    assert calls[0].startswith(f"python -m pip install --quiet --no-index --find-links {wheels} ninja wheel")
    assert re.match(rf"python -m pip install --no-deps --no-build-isolation --no-index --find-links {wheels} "
                    r"/\S+/pkg ", calls[1])
    assert len(calls) == 2 and not any("download" in c for c in calls)


def test_offline_through_pip_environment_and_tools_already_present(run, tmp_path):
    wheels = tmp_path / "wheels"
    sdist(wheels)
    rc, _, err, log = run(missing="", PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
    assert rc == 0, err
    calls = pip_calls(log)
    assert len(calls) == 1 and "--no-deps --no-build-isolation --no-index" in calls[0]  # no build-tool install


def test_offline_without_the_sdist_says_how_to_fetch_it(run, tmp_path):
    (tmp_path / "wheels").mkdir()
    rc, _, err, log = run("--from", str(tmp_path / "wheels"))
    assert rc == 1 and f"no mamba_ssm-2.3.2.post1.tar.gz in {tmp_path / 'wheels'}: MAMBA_SKIP_CUDA_BUILD=TRUE pip " \
                       "download --no-deps --no-binary :all:" in err
    assert not any("download" in c for c in pip_calls(log))
    rc, _, err, _ = run("--from", str(tmp_path / "nowhere"))
    assert rc == 1 and "is not a folder" in err


def test_conda_layout_headers_reach_the_build(run, tmp_path):
    """conda-forge's cuda-cudart-dev puts cuda_runtime.h under targets/<arch>/include: the build gets it through
    CUDA_INC_PATH (torch.utils.cpp_extension.include_paths)."""
    (tmp_path / "include" / "cuda_runtime.h").unlink()
    inc = tmp_path / "targets" / "x86_64-linux" / "include"
    inc.mkdir(parents=True)
    (inc / "cuda_runtime.h").write_text("/* stand-in */\n")
    wheels = tmp_path / "wheels"
    sdist(wheels)
    rc, _, err, log = run("--from", str(wheels), CUDA_HOME=str(tmp_path))
    assert rc == 0, err
    assert pip_calls(log)[-1].endswith(f"CUDA_INC_PATH={inc} ")


# ----------------------------------------------------------------------------------------------------------------
# Environment files and the lock


def _lock(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            pkg, _, version = line.partition("==")
            pins[_norm(pkg)] = version
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_pins(name: str) -> tuple[dict[str, str], list[str], list[str]]:
    """(pip pins, pip option lines, conda dependencies) of an environment file."""
    import yaml

    deps = yaml.safe_load((ROOT / name).read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    pins = {_norm(p.split("==")[0]): p.split("==")[1] for p in pip if "==" in p and not p.startswith("-")}
    return pins, [p for p in pip if p.startswith("-")], [d for d in deps if isinstance(d, str)]


def test_lock_covers_the_environment_the_tests_run_in():
    """Every installed distribution (but this project and the built kernel) is in the lock at its version."""
    from importlib.metadata import distributions

    import torch

    lock = {**_lock("requirements-lock.txt"), **_lock("requirements-lock-cuda13.txt")}
    cuda13 = _lock("requirements-lock-cuda13.txt")
    on_cuda13 = (torch.version.cuda or "").startswith("13.")
    installed = {_norm(d.metadata["Name"]): d.version for d in distributions()}
    skip = {"mambapro", "pip", "mambapro-selective-scan-cuda", "ninja", "wheel"}  # the kernel and its build tools
    wrong = {name: (version, lock.get(name)) for name, version in installed.items()
             if name not in skip and (on_cuda13 or name not in cuda13) and lock.get(name) != version
             and not (name.startswith(("nvidia-", "cuda-")) and not on_cuda13)}
    assert not wrong, f"installed vs requirements-lock*.txt (regenerate it, README 'Lock'): {wrong}"


@pytest.mark.parametrize("env_file, cuda, torch_tag", [("environment.yml", "13.0", ""),
                                                        ("environment-cuda12.yml", "12.8", "+cu128")])
def test_environment_files_pin_what_the_lock_pins(env_file, cuda, torch_tag):
    lock = _lock("requirements-lock.txt")
    pins, options, conda = _env_pins(env_file)
    assert "-c requirements-lock.txt" in options
    for name, version in pins.items():
        assert name in lock, f"{env_file}: {name} is not in requirements-lock.txt"
        assert version == lock[name] + (torch_tag if name in ("torch", "torchvision") else ""), (env_file, name)
    assert pins["torch"].split("+")[0] == "2.14.1" and pins["torchvision"].split("+")[0] == "0.29.1"
    assert f"cuda-nvcc={cuda}" in conda and f"cuda-cudart-dev={cuda}" in conda  # torch's CUDA major.minor
    python = next(d for d in conda if d.startswith("python="))
    assert python == "python=3.11"
    if torch_tag:
        assert "--extra-index-url https://download.pytorch.org/whl/cu128" in options
        assert "-c requirements-lock-cuda13.txt" not in options  # torch's cu128 wheel pins its own runtime
    else:
        assert "-c requirements-lock-cuda13.txt" in options


def test_pyproject_pins_agree_with_the_lock():
    import tomllib

    lock = _lock("requirements-lock.txt")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    for req in reqs:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^;,\s]+)", req)
        if m:
            assert lock.get(_norm(m[1])) == m[2], req
        elif "<=" in req:
            name, bound = re.fullmatch(r"([A-Za-z0-9_.\-]+)>=[^,]+,<=(\S+)", req).groups()
            assert lock[_norm(name)] == bound, req  # torch, torchvision: the lock is the newest allowed


def test_ci_install_uses_the_lock():
    text = (ROOT / ".ci" / "install").read_text()
    assert text.count("-c requirements-lock.txt -c requirements-lock-cuda13.txt") == 2
