"""RecBole 1.2.1's own SRGNN trained on kdsr's SR-GNN steps: the peer row of `kdsr bench
--models ...,srgnn --python ...` (reports/bench/models.md).

  python bench/recbole_srgnn_bench.py bench FILE.npz STEPS

FILE.npz (written by kdsr, src/bench/models.rs `srgnn_recbole_steps`) holds the first steps of
a full-Beauty SR-GNN epoch as RecBole's data loader shapes them: `seq_k` [B, max_len] (each
prefix left-aligned, zero-padded), `len_k` [B], `target_k` [B], for k = 0 .. STEPS, and
`config` (JSON: n_items, max_len, embedding, step, lr, weight_decay, threads). Each step is
RecBole's `calculate_loss` (CE over every item, as RecBole scores them), `backward` and a
`torch.optim.Adam` step, as RecBole's trainer runs them; step 0 is not timed. Prints one JSON
line: the mean forward / backward / Adam milliseconds over the timed steps.

RecBole is imported without its dependencies (logging, data frames, tensorboard), which the
model class does not use, by the stubs of bench/parity_srgnn.py.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch._dynamo  # noqa: F401  (the optimiser imports it; it must see the real modules, not the stubs)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity_srgnn import SRGNN, recbole, srgnn_config  # noqa: E402  (installs the stubs first)


class _Dataset:
    def __init__(self, n):
        self.n = n

    def num(self, field):
        return self.n


def main(path, steps):
    data = np.load(path)
    cfg = json.loads(bytes(data["config"].astype(np.uint8)).decode())
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(2023)
    model = SRGNN(srgnn_config(cfg["max_len"], cfg["embedding"], cfg["step"]), _Dataset(cfg["n_items"] + 1))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    sums = [0.0, 0.0, 0.0]
    timed = 0
    for k in range(steps + 1):
        if f"seq_{k}" not in data:
            break
        batch = {
            "item_id_list": torch.from_numpy(data[f"seq_{k}"]).long(),
            "item_length": torch.from_numpy(data[f"len_{k}"]).long(),
            "item_id": torch.from_numpy(data[f"target_{k}"]).long(),
        }
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = model.calculate_loss(batch)
        loss.item()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if k > 0:
            timed += 1
            for i, d in enumerate([t1 - t0, t2 - t1, t3 - t2]):
                sums[i] += d * 1e3
    n = max(timed, 1)
    print(
        json.dumps(
            {
                "forward_ms": sums[0] / n,
                "backward_ms": sums[1] / n,
                "adam_ms": sums[2] / n,
                "timed_steps": timed,
                "recbole": recbole.__version__,
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "bench":
        sys.exit(__doc__)
    main(sys.argv[2], int(sys.argv[3]))
