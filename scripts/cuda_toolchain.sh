#!/usr/bin/env bash
# A CUDA 13.0 build toolchain from PyPI wheels, for `just build-cuda` on a machine without a
# system CUDA (or a GPU): nvcc, the CUDA headers and cuBLAS/cuRAND go into DIR/venv, and link
# stubs for the two libraries no registry ships (the driver's libcuda and NVRTC) are generated
# from the symbol list of the cudarc version in Cargo.lock. The stubs are only for linking:
# on the GPU machine the binary loads the real driver and libraries (see README, "CUDA").
#
# Usage: scripts/cuda_toolchain.sh DIR   (prints the CUDA root to use as CUDA_ROOT)
set -euo pipefail

dir=${1:?usage: scripts/cuda_toolchain.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ ! -x "$dir/venv/bin/python" ]; then
    python3 -m venv "$dir/venv"
fi
"$dir/venv/bin/pip" install --quiet \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" \
    "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cublas==13.0.*" \
    "nvidia-curand==10.4.0.*"
root=$("$dir/venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
[ -x "$root/bin/nvcc" ] || { echo "cuda_toolchain: no nvcc under $root" >&2; exit 1; }

# The cudarc sources cargo resolves for this project with the cuda feature (fetched if needed).

cudarc=$(cargo metadata --format-version 1 --features cuda | python3 -c '
import json, os, sys
pkgs = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"]
if not pkgs:
    sys.exit("cuda_toolchain: cudarc is not in Cargo.lock")
print(os.path.dirname(pkgs[0]["manifest_path"]))')

# Link stubs: every driver (cu*) and NVRTC (nvrtc*) function cudarc declares.
stub() { # name prefix sys-dir soname (the real library's, so the binary finds it on a GPU machine)
    grep -hoE "^\s+fn ($2[A-Za-z0-9_]+)\(" "$cudarc/src/$3/sys/mod.rs" \
        | sed -E 's/^\s+fn //; s/\($//' | sort -u | awk '{print "void "$1"(void){}"}' > "$dir/$1.c"
    [ -s "$dir/$1.c" ] || { echo "cuda_toolchain: no $2* functions in $cudarc/src/$3/sys" >&2; exit 1; }
    cc -shared -fPIC -Wl,-soname,"$4" -o "$root/lib/lib$1.so" "$dir/$1.c"
}
stub cuda cu driver libcuda.so.1
stub nvrtc nvrtc nvrtc libnvrtc.so.13
# Unversioned names for the linker.
ln -sf libcublas.so.13 "$root/lib/libcublas.so"
ln -sf libcublasLt.so.13 "$root/lib/libcublasLt.so"
ln -sf libcurand.so.10 "$root/lib/libcurand.so"
ln -sf libcudart.so.13 "$root/lib/libcudart.so"
echo "$root"
