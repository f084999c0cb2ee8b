"""PyTorch reference models for kdsr's parity tests and `just bench`.

The modules mirror RecBole's SASRec and GRU4Rec with RecBole's parameter names, which are
also the names kdsr uses, so weights move between the two by name.

  python bench/torch_ref.py parity            # expected outputs pasted into kdsr's tests
  python bench/torch_ref.py bench FILE.npz    # time one training step on kdsr's batch
  python bench/torch_ref.py bench-cdl FILE.npz # the same for SASRec + modality tables + CDL losses
"""
import json
import math
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class MultiHeadAttention(nn.Module):
    def __init__(self, d, n_heads, attn_p, hid_p, eps):
        super().__init__()
        self.n_heads = n_heads
        self.query, self.key, self.value, self.dense = (nn.Linear(d, d) for _ in range(4))
        self.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.attn_dropout = nn.Dropout(attn_p)
        self.out_dropout = nn.Dropout(hid_p)

    def forward(self, x, mask):
        b, t, d = x.shape
        dh = d // self.n_heads
        split = lambda y: y.view(b, t, self.n_heads, dh).transpose(1, 2)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + mask
        probs = self.attn_dropout(torch.softmax(scores, dim=-1))
        ctx = (probs @ v).transpose(1, 2).reshape(b, t, d)
        return self.LayerNorm(self.out_dropout(self.dense(ctx)) + x)


class FeedForward(nn.Module):
    def __init__(self, d, inner, p, eps):
        super().__init__()
        self.dense_1 = nn.Linear(d, inner)
        self.dense_2 = nn.Linear(inner, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.dropout = nn.Dropout(p)

    def forward(self, x):
        h = self.dense_2(F.gelu(self.dense_1(x)))  # erf GELU, as RecBole
        return self.LayerNorm(self.dropout(h) + x)


class Layer(nn.Module):
    def __init__(self, d, n_heads, inner, hid_p, attn_p, eps):
        super().__init__()
        self.multi_head_attention = MultiHeadAttention(d, n_heads, attn_p, hid_p, eps)
        self.feed_forward = FeedForward(d, inner, hid_p, eps)

    def forward(self, x, mask):
        return self.feed_forward(self.multi_head_attention(x, mask))


class Encoder(nn.Module):
    def __init__(self, n_layers, **kw):
        super().__init__()
        self.layer = nn.ModuleList([Layer(**kw) for _ in range(n_layers)])


class SASRec(nn.Module):
    def __init__(self, n_items, max_len, d=64, n_layers=2, n_heads=2, inner=256, hid_p=0.5, attn_p=0.5, eps=1e-12):
        super().__init__()
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.dropout = nn.Dropout(hid_p)
        self.trm_encoder = Encoder(n_layers, d=d, n_heads=n_heads, inner=inner, hid_p=hid_p, attn_p=attn_p, eps=eps)

    def forward(self, items, extra=None):  # [B, T] -> [B, T, D]; extra: fused modality input
        t = items.shape[1]
        x = self.item_embedding(items)
        if extra is not None:
            x = x + extra
        x = x + self.position_embedding(torch.arange(t))
        x = self.dropout(self.LayerNorm(x))
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
        keep = causal[None, None] & (items > 0)[:, None, None, :]
        mask = torch.where(keep, 0.0, -10000.0)
        for layer in self.trm_encoder.layer:
            x = layer(x, mask)
        return x

    def candidates(self):
        return self.item_embedding.weight[1:]


class GRU4Rec(nn.Module):
    def __init__(self, n_items, emb=64, hidden=128, n_layers=1, p=0.3):
        super().__init__()
        self.item_embedding = nn.Embedding(n_items + 1, emb, padding_idx=0)
        self.emb_dropout = nn.Dropout(p)
        self.gru_layers = nn.GRU(emb, hidden, n_layers, bias=False, batch_first=True)
        self.dense = nn.Linear(hidden, emb)

    def forward(self, items):
        out, _ = self.gru_layers(self.emb_dropout(self.item_embedding(items)))
        return self.dense(out)

    def candidates(self):
        return self.item_embedding.weight[1:]


class CdlHead(nn.Module):
    def __init__(self, d, n_codes):
        super().__init__()
        self.holistic_0 = nn.Linear(d, d)
        self.dissected_1 = nn.Linear(d, d)
        self.dissected_2 = nn.Linear(d, n_codes)


class SASRecCDL(SASRec):
    """kdsr's SASRec + CDL (src/model/fusion.rs, src/distill/student.rs): the input embedding is
    id_i + sum_m P_m E_m[i]; the correlation losses run on the batch's distinct items and its
    list of in-sequence pairs, with the teacher's targets precomputed by kdsr."""

    def __init__(self, n_items, max_len, dims, n_codes):
        super().__init__(n_items, max_len)
        d = self.item_embedding.weight.shape[1]
        self.names = list(dims)
        self.modality_table = nn.ParameterDict({m: nn.Parameter(torch.zeros(n_items + 1, k)) for m, k in dims.items()})
        self.modality_proj = nn.ModuleDict({m: nn.Linear(k, d) for m, k in dims.items()})
        self.cdl = nn.ModuleDict({m: CdlHead(k, n_codes[m]) for m, k in dims.items()})

    def forward(self, items):
        extra = sum(self.modality_proj[m](self.modality_table[m][items]) for m in self.names)
        return super().forward(items, extra)

    def cdl_loss(self, pu, pa, pb, targets, cfg):
        total = 0.0
        for m in self.names:
            head, (hol, codes) = self.cdl[m], targets[m]
            e = self.modality_table[m][pu]  # [U, d]
            p = head.holistic_0(e)
            if cfg["scoring"] == "cos":
                p = p / torch.sqrt((p * p).sum(-1, keepdim=True) + 1e-12)
            elif cfg["scoring"] != "dot":
                raise SystemExit(f"bench-cdl: scoring {cfg['scoring']} is not in the reference")
            s = (p[pa] * p[pb]).sum(-1)  # [P]
            holistic = (((s - hol) / cfg["tau"]) ** 2).sum() / cfg["rows_with_pairs"]
            h = e @ head.dissected_1.weight.T  # W_1 (e_a - e_b) + b_1, first layer per item
            z = h[pa] - h[pb] + head.dissected_1.bias
            dissected = F.cross_entropy(head.dissected_2(torch.relu(z)), codes)
            total = total + cfg["alpha"] * holistic + cfg["beta"] * dissected
        return total


def bench_cdl(path, reps=5):
    data = np.load(path)
    cfg = json.loads(bytes(data["config"]).decode())
    torch.set_num_threads(cfg["threads"])
    t = lambda k: torch.from_numpy(data[k])
    items, rows, targets = t("items"), t("rows"), t("targets")
    pu, pa, pb = t("pairs.items"), t("pairs.a"), t("pairs.b")
    names = cfg["modalities"]
    sd = {k[2:]: t(k) for k in data.files if k.startswith("p.")}
    dims = {m: sd[f"modality_table.{m}"].shape[1] for m in names}
    n_codes = {m: sd[f"cdl.{m}.dissected_2.weight"].shape[0] for m in names}
    model = SASRecCDL(cfg["n_items"], cfg["max_len"], dims, n_codes)
    model.load_state_dict(sd)
    pair_targets = {m: (t(f"m{i}.holistic"), t(f"m{i}.codes")) for i, m in enumerate(names)}
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])

    def loss_fn():
        h = model(items)
        hm = h.reshape(-1, h.shape[-1])[rows]
        ce = F.cross_entropy(hm @ model.candidates().T, targets)
        return ce + model.cdl_loss(pu, pa, pb, pair_targets, cfg)

    loss_eval, step_ms = eval_and_time(model, opt, loss_fn, reps)
    print(json.dumps({"torch_cdl_loss_eval": loss_eval, "torch_cdl_step_ms": step_ms}))


def eval_and_time(model, opt, loss_fn, reps):
    """The eval-mode loss (no dropout), then the median milliseconds of `reps` training steps
    (zero_grad, loss, backward, Adam) after one untimed warm-up step."""
    model.eval()
    with torch.no_grad():
        loss_eval = float(loss_fn())
    model.train()
    times = []
    for r in range(reps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        if r > 0:
            times.append((time.perf_counter() - t0) * 1000)
    return loss_eval, statistics.median(times)


def fill_pattern(model):
    """The parity tests' fixed weights: parameter p (sorted by name), element j (row-major)
    gets 0.1 * sin(0.37 * (j + 1) + 1.3 * p)."""
    with torch.no_grad():
        for p, (name, param) in enumerate(sorted(model.named_parameters())):
            j = torch.arange(param.numel(), dtype=torch.float64)
            param.copy_((0.1 * torch.sin(0.37 * (j + 1) + 1.3 * p)).reshape(param.shape).float())


def parity():
    torch.set_printoptions(precision=7)
    items = torch.tensor([[3, 1, 4, 1, 5], [9, 2, 6, 0, 0]])
    out = {}
    sas = SASRec(n_items=10, max_len=5, d=8, n_layers=2, n_heads=2, inner=16).eval()
    fill_pattern(sas)
    gru = GRU4Rec(n_items=10, emb=8, hidden=6).eval()
    fill_pattern(gru)
    for name, m in [("sasrec", sas), ("gru4rec", gru)]:
        with torch.no_grad():
            h = m(items)
            scores = h @ m.candidates().T
        out[name] = {"hidden_b0_t4": h[0, 4].tolist(), "hidden_b1_t2": h[1, 2].tolist(), "scores_b1_t2": scores[1, 2].tolist()}
    print(json.dumps(out, indent=1))


def bench(path, reps=5):
    data = np.load(path)
    cfg = json.loads(bytes(data["config"]).decode())
    torch.set_num_threads(cfg["threads"])
    items = torch.from_numpy(data["items"].astype(np.int64))
    rows = torch.from_numpy(data["rows"].astype(np.int64))
    targets = torch.from_numpy(data["targets"].astype(np.int64))
    n_items = cfg["n_items"]
    result = {}
    for name in cfg["models"]:
        if name == "sasrec":
            m = SASRec(n_items, cfg["max_len"])
        else:
            m = GRU4Rec(n_items)
        sd = {k[len(name) + 1:]: torch.from_numpy(data[k]) for k in data.files if k.startswith(name + ".")}
        m.load_state_dict(sd)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)

        def loss_fn():
            h = m(items)
            hm = h.reshape(-1, h.shape[-1])[rows]
            return F.cross_entropy(hm @ m.candidates().T, targets)

        result[f"torch_{name}_loss_eval"], result[f"torch_{name}_step_ms"] = eval_and_time(m, opt, loss_fn, reps)
    result["torch_version"] = torch.__version__
    result["torch_threads"] = torch.get_num_threads()
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1] == "parity":
        parity()
    elif sys.argv[1] == "bench":
        bench(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 5)
    elif sys.argv[1] == "bench-cdl":
        bench_cdl(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 5)
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
