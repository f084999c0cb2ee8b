#!/usr/bin/env bash
# The GPU check: SASRec and SASRec + CDL on full Beauty for a few epochs on cuda:0, seconds per
# epoch, and the test metrics against the CPU build's on the same settings.
#
#   scripts/gpu_check.sh pack [DIR]   here (no GPU needed): a CUDA build for compute capability
#                                     90 (`just build-cuda 90`), stripped, the Beauty files it
#                                     reads, the teacher cache, and the CPU build's metrics of the
#                                     same runs, into DIR (default .gpu_check, git-ignored;
#                                     the binary xz-compressed); refuses more than 64 MiB.
#   scripts/gpu_check.sh run [DIR]    on an H100/H200-class machine (CUDA 13 driver, no network,
#                                     a Python whose environment ships nvidia-cublas, -curand,
#                                     -cuda-runtime and -cuda-nvrtc; PYTHON picks it, default
#                                     python3): trains both runs on cuda:0 with the machine's own
#                                     CUDA libraries, prints seconds per epoch and the comparison,
#                                     writes DIR/result.json (and $OUT/gpu_check.json when OUT is
#                                     set); exit 1 when a metric is outside the tolerance.
#
# The runs: `kdsr train --dataset beauty --model sasrec --epochs 3 --seed 2023` (paper protocol,
# batches of 256 targets), and the same with `--cdl --modality attributes` (correlation
# distillation on the attributes modality only: the text modality's cached features are valid
# only beside the 90 MB text encoder, which would not fit the 64 MiB). Tolerance: the GPU's
# test HR@20 and NDCG@20 after epoch 3 within max(0.3, 5% of the CPU value) percentage points
# of the CPU build's (float sums run in another order on the GPU, so three epochs of training
# drift apart slightly; 0.3 points is about the seed-to-seed std of SASRec at that point).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cmd="${1:-}"
dir="${2:-$root/.gpu_check}"
epochs=3
runs=("sasrec:" "sasrec-cdl:--cdl --modality attributes")
limit_bytes=$((64 * 1024 * 1024))

train() { # binary data cache out name "global flags" "run flags" -> prints the run's metrics.json path
    local bin=$1 data=$2 cache=$3 out=$4 name=$5 global=$6 flags=$7
    # shellcheck disable=SC2086 # the flags are words
    "$bin" --data-dir "$data" --cache-dir "$cache" $global train --dataset beauty --model sasrec \
        --epochs "$epochs" --seed 2023 --quiet --force --out "$out/$name" $flags >"$out/$name.log" 2>&1 ||
        { cat "$out/$name.log" >&2; return 1; }
    find "$out/$name" -name metrics.json | head -n 1
}

case "$cmd" in
pack)
    export PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
    command -v just >/dev/null || python3 -m pip install --quiet rust-just==1.59.0
    (cd "$root" && just build-cuda 90)
    (cd "$root" && cargo build --release)
    rm -rf "$dir"
    mkdir -p "$dir/data/amazon" "$dir/cache" "$dir/cpu"
    cp "$root/target/cuda/release/kdsr" "$dir/kdsr"
    strip "$dir/kdsr"
    xz -9 -T2 "$dir/kdsr" # 87 MB stripped -> 12 MB; `run` unpacks it with Python's lzma
    data_src="${KDSR_DATA_DIR:-$root/../shared/data}"
    for f in Beauty.txt.gz Beauty_item2attributes.json.gz; do cp "$data_src/amazon/$f" "$dir/data/amazon/"; done
    # The CPU build's metrics (2 threads); its teacher cache goes into the pack.
    for r in "${runs[@]}"; do
        name=${r%%:*} flags=${r#*:}
        m=$(train "$root/target/release/kdsr" "$dir/data" "$dir/cache" "$dir/cpu" "$name" "--threads 2" "$flags")
        cp "$m" "$dir/cpu/$name.metrics.json"
        rm -rf "${dir:?}/cpu/$name"
    done
    rm -rf "$dir/cache/locks"
    cp "$0" "$dir/gpu_check.sh"
    size=$(du -sb "$dir" | cut -f1)
    echo "gpu_check pack: $dir, $((size / 1024 / 1024)) MiB:"
    (cd "$dir" && find . -type f -printf '  %9s  %p\n' | sort -k2)
    [[ $size -le $limit_bytes ]] || { echo "gpu_check pack: more than 64 MiB" >&2; exit 1; }
    ;;
run)
    started=$(date +%s)
    py="${PYTHON:-python3}"
    libs=$("$py" - <<'EOF'
import glob, os
import nvidia
dirs = set()
for base in nvidia.__path__:
    for lib in glob.glob(os.path.join(base, "**", "lib*.so*"), recursive=True):
        if any(k in os.path.basename(lib) for k in ("cublas", "curand", "cudart", "nvrtc")):
            dirs.add(os.path.dirname(lib))
print(":".join(sorted(dirs)))
EOF
    )
    [[ -n "$libs" ]] || { echo "gpu_check: no nvidia-* libraries in $py's environment" >&2; exit 2; }
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    out="$dir/gpu"
    rm -rf "$out"
    mkdir -p "$out"
    "$py" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$dir/kdsr.xz" "$out/kdsr"
    chmod +x "$out/kdsr"
    ok=1
    result="{\"epochs\": $epochs, \"runs\": {"
    sep=""
    for r in "${runs[@]}"; do
        name=${r%%:*} flags=${r#*:}
        m=$(train "$out/kdsr" "$dir/data" "$dir/cache" "$out" "$name" "--device cuda:0" "$flags")
        line=$("$py" - "$m" "$dir/cpu/$name.metrics.json" "$name" <<'EOF'
import json, sys
gpu, cpu, name = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
rows, ok = {}, True
for k in ("hr@20", "ndcg@20", "hr@5", "mrr@20"):
    g, c = gpu["test"][k], cpu["test"][k]
    tol = max(0.3, 0.05 * c)
    judged = k in ("hr@20", "ndcg@20")
    ok &= (not judged) or abs(g - c) <= tol
    rows[k] = {"gpu": g, "cpu": c, "tolerance": tol if judged else None}
teacher = ((gpu.get("modality") or {}).get("attributes") or {}).get("autoencoder") or {}
out = {"teacher_from_cache": teacher.get("from_cache"), "seconds_per_epoch_gpu": gpu["seconds_per_epoch"], "eval_seconds_per_epoch_gpu": gpu["eval_seconds_per_epoch"],
       "seconds_per_epoch_cpu_2_threads": cpu["seconds_per_epoch"], "metrics": rows, "ok": ok}
print(json.dumps(out))
print(f"{name}: {gpu['seconds_per_epoch']:.1f} s/epoch on the GPU (CPU build, 2 threads: {cpu['seconds_per_epoch']:.1f}); "
      + "; ".join(f"{k} {v['gpu']:.2f} vs {v['cpu']:.2f}" for k, v in rows.items())
      + ("" if ok else "  OUTSIDE TOLERANCE"), file=sys.stderr)
EOF
        )
        [[ $line == *'"ok": true'* ]] || ok=0
        result+="$sep\"$name\": $line"
        sep=", "
    done
    result+="}, \"seconds\": $(($(date +%s) - started)), \"ok\": $([[ $ok == 1 ]] && echo true || echo false)}"
    echo "$result" >"$dir/result.json"
    [[ -n "${OUT:-}" ]] && cp "$dir/result.json" "$OUT/gpu_check.json"
    echo "gpu_check: $([[ $ok == 1 ]] && echo passed || echo FAILED) in $(($(date +%s) - started)) s ($dir/result.json)"
    [[ $ok == 1 ]]
    ;;
*)
    echo "usage: scripts/gpu_check.sh pack|run [DIR]" >&2
    exit 2
    ;;
esac
