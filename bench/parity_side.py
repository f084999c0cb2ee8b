"""PyTorch transcriptions of the side-information backbones' reference forward passes, for
kdsr's parity tests (tests/parity_side.rs reads the fixture this script writes).

  python bench/parity_side.py tests/fixtures/parity_side.json

- DIF-SR: `AIM-SE/DIF-SR` `SASRecD.forward` / `DIFMultiHeadAttention.forward` /
  `calculate_loss` (CE + λ · attribute BCE), with dense side streams given as inputs
  (kdsr's modality streams) in place of the categorical attribute embeddings; padding cells
  carry zero streams and a zero item vector (`padding_idx=0`), positions are `arange(T)`, the
  attention mask is RecBole's (key padding + causal, additive -10000), rows are `max_len`
  wide.
- DIF-SR, categorical side information (`model.side = "categorical"`, the reference's): one
  stream, the sum over each item's attributes (labels()) of the rows of the attribute table
  `feature_embed_layer_list.0.token_seq_embedding` [ATTRS, D], which the reference never
  trains (a plain dict inside RecBole's ContextSeqEmbAbstractLayer): detached here, its
  gradient reported as zeros.
- NOVA: the paper's equations (no official code), causal: Q, K from the gated fusion of the
  layer input with the position and side streams, V from the layer input only.
- NOVA, cloze variant (`model.variant = "cloze"`, BERT4Rec-style as the NOVA paper trains it):
  the same layers with a bidirectional mask over the real cells (padding keys masked), a mask
  embedding `mask_embedding` [1, D] in place of the item embedding at a masked cell, zero side
  streams there, positions `arange(W)` from a table of MAX_LEN + 1 rows. Two batches:
  `nova_cloze` appends the mask after each row's items (as BERT4Rec predicts) and reads it
  (the state is reported at the row's last real cell, where kdsr places it; the other cells'
  entries are the states of the items themselves); `nova_cloze_masked` is a masked-item batch
  (CLOZE_ITEMS with CLOZE_MASKED: a masked cell reads the mask, a cell replaced by a random
  item reads that item) whose loss is the mean cross-entropy over the target cells.

Every parameter p (sorted by name), element j: 0.5 * sin(0.37 * (j + 1) + 1.3 * p). The side
stream m, cell (b, t), element k: 0.2 * cos(0.11 * (k + 1) + 0.7 * m + 0.3 * (b * T + t)) at real
cells, 0 at padding. Outputs: hidden states at the real cells, the loss (mean CE of the last
real cell of each row against `targets` over items 1..N, plus the auxiliary loss), and the
gradient of every parameter.
"""
import json
import math
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

N_ITEMS, D, H, INNER, LAYERS, STREAMS, ATTRS, MAX_LEN = 10, 8, 2, 16, 2, 2, 4, 6
ITEMS = [[3, 1, 4, 1, 5, 0], [9, 2, 6, 0, 0, 0]]
TARGETS = [7, 8]
# A masked-item batch from ITEMS: cell (0, 2) replaced by a random item (7), masked cells read
# the mask embedding; targets are the cells' original items.
CLOZE_ITEMS = [[3, 1, 7, 1, 5, 0], [9, 2, 6, 0, 0, 0]]
CLOZE_MASKED = [[0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0]]
CLOZE_TARGETS = [[0, 1, 4, 0, 5, 0], [9, 0, 6, 0, 0, 0]]
LAMBDA = 10.0
EPS = 1e-12
# Weights large enough that the attention scores, and so the gate, are far from uniform.
AMP = 0.5


def fill(shapes):
    params = {}
    for p, name in enumerate(sorted(shapes)):
        n = math.prod(shapes[name])
        v = torch.tensor([AMP * math.sin(0.37 * (j + 1) + 1.3 * p) for j in range(n)])
        params[name] = v.reshape(shapes[name]).requires_grad_(True)
    return params


def streams(items):
    b, t = len(items), len(items[0])
    out = torch.zeros(STREAMS, b, t, D)
    for m in range(STREAMS):
        for r in range(b):
            for c in range(t):
                if items[r][c] != 0:
                    for k in range(D):
                        out[m, r, c, k] = 0.2 * math.cos(0.11 * (k + 1) + 0.7 * m + 0.3 * (r * t + c))
    return out


def labels():
    y = torch.zeros(N_ITEMS + 1, ATTRS)
    for i in range(1, N_ITEMS + 1):
        for a in range(ATTRS):
            if (i * 3 + a * 5) % 7 < 3:
                y[i, a] = 1.0
    return y


def linear(P, name, x):
    y = x @ P[name + ".weight"].T
    if name + ".bias" in P:
        y = y + P[name + ".bias"]
    return y


def layer_norm(P, name, x):
    return F.layer_norm(x, (x.shape[-1],), P[name + ".weight"], P[name + ".bias"], EPS)


def recbole_mask(items):
    it = torch.tensor(items)
    pad = (it > 0).long().unsqueeze(1).unsqueeze(2)
    t = it.shape[1]
    causal = (torch.triu(torch.ones(1, t, t), diagonal=1) == 0).unsqueeze(1).long()
    return (1.0 - (pad * causal).double()) * -10000.0  # [B, 1, T, T]


def split(x):
    b, t, d = x.shape
    return x.view(b, t, H, d // H).permute(0, 2, 1, 3)


def merge(x):
    b, h, t, dh = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, t, h * dh)


def feed_forward(P, pre, x):
    h = linear(P, pre + ".dense_2", F.gelu(linear(P, pre + ".dense_1", x)))
    return layer_norm(P, pre + ".LayerNorm", h + x)


def block_shapes(pre, extra):
    s = {}
    att = pre + ".multi_head_attention"
    for n in ["query", "key", "value", "dense"] + extra:
        s[f"{att}.{n}.weight"], s[f"{att}.{n}.bias"] = (D, D), (D,)
    s[f"{att}.LayerNorm.weight"], s[f"{att}.LayerNorm.bias"] = (D,), (D,)
    ff = pre + ".feed_forward"
    s[f"{ff}.dense_1.weight"], s[f"{ff}.dense_1.bias"] = (INNER, D), (INNER,)
    s[f"{ff}.dense_2.weight"], s[f"{ff}.dense_2.bias"] = (D, INNER), (D,)
    s[f"{ff}.LayerNorm.weight"], s[f"{ff}.LayerNorm.bias"] = (D,), (D,)
    return s


def base_shapes():
    return {
        "item_embedding.weight": (N_ITEMS + 1, D),
        "position_embedding.weight": (MAX_LEN, D),
        "LayerNorm.weight": (D,),
        "LayerNorm.bias": (D,),
    }


ATTRIBUTE_TABLE = "feature_embed_layer_list.0.token_seq_embedding"


def difsr_shapes(streams=STREAMS):
    s = base_shapes()
    for l in range(LAYERS):
        pre = f"trm_encoder.layer.{l}"
        extra = ["query_p", "key_p"] + [f"{n}.{m}" for n in ["query_layers", "key_layers"] for m in range(streams)]
        s.update(block_shapes(pre, extra))
        fl = pre + ".multi_head_attention.fusion_layer.projection"
        s[fl + ".0.weight"], s[fl + ".0.bias"] = (MAX_LEN, MAX_LEN), (MAX_LEN,)
        s[fl + ".2.weight"], s[fl + ".2.bias"] = (1, MAX_LEN), (1,)
    s["ap.0.weight"], s["ap.0.bias"] = (ATTRS, D), (ATTRS,)
    return s


def difsr_forward(P, items, side):
    it = torch.tensor(items)
    b, t = it.shape
    x = P["item_embedding.weight"][it] * (it > 0).double().unsqueeze(-1)  # padding_idx row
    pos = P["position_embedding.weight"][torch.arange(t)].unsqueeze(0).expand(b, t, D)
    x = layer_norm(P, "LayerNorm", x)
    mask = recbole_mask(items)
    dh = D // H
    for l in range(LAYERS):
        att = f"trm_encoder.layer.{l}.multi_head_attention"
        sc = lambda q, k, inp: split(linear(P, f"{att}.{q}", inp)) @ split(linear(P, f"{att}.{k}", inp)).transpose(-1, -2)
        table = [sc(f"query_layers.{m}", f"key_layers.{m}", side[m]).unsqueeze(-2) for m in range(len(side))]
        table.append(sc("query", "key", x).unsqueeze(-2))
        table.append(sc("query_p", "key_p", pos).unsqueeze(-2))
        stack = torch.cat(table, dim=-2)  # [B, H, T, K, T]
        fl = f"{att}.fusion_layer.projection"
        energy = linear(P, fl + ".2", torch.relu(linear(P, fl + ".0", stack)))
        w = torch.softmax(energy.squeeze(-1), dim=-1)
        scores = (stack * w.unsqueeze(-1)).sum(dim=-2)
        probs = torch.softmax(scores / math.sqrt(dh) + mask, dim=-1)
        ctx = merge(probs @ split(linear(P, f"{att}.value", x)))
        x = layer_norm(P, f"{att}.LayerNorm", linear(P, f"{att}.dense", ctx) + x)
        x = feed_forward(P, f"trm_encoder.layer.{l}.feed_forward", x)
    return x


def difsr_categorical_shapes():
    s = difsr_shapes(1)
    s[ATTRIBUTE_TABLE] = (ATTRS, D)
    return s


def difsr_categorical_forward(P, items, _side):
    """The attribute stream: per cell, the sum of the (untrained) table rows of its item's attributes."""
    it = torch.tensor(items)
    stream = labels()[it] @ P[ATTRIBUTE_TABLE].detach()  # [B, T, D]; row 0 (padding) has none
    return difsr_forward(P, items, stream.unsqueeze(0))


def difsr_aux(P, h, targets):
    logits = linear(P, "ap.0", h)
    y = labels()[torch.tensor(targets)]
    return LAMBDA * F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean()


def nova_shapes():
    s = base_shapes()
    for l in range(LAYERS):
        pre = f"trm_encoder.layer.{l}"
        s.update(block_shapes(pre, []))
        s[pre + ".fusion.gate.weight"] = (1, D)
    return s


def nova_layers(P, r, pos, side, mask):
    """NOVA's layers over r [B, T, D] (after the input LayerNorm), positions and side streams
    [B, T, D] each, an additive attention mask [B, 1, T, T] or [B, 1, 1, T]."""
    dh = D // H
    for l in range(LAYERS):
        pre = f"trm_encoder.layer.{l}"
        att = pre + ".multi_head_attention"
        feats = torch.stack([r, pos] + list(side), dim=2)  # [B, T, k, D]
        g = torch.sigmoid(feats @ P[pre + ".fusion.gate.weight"].T)  # [B, T, k, 1]
        fused = (feats * g).sum(dim=2)
        q, k = split(linear(P, f"{att}.query", fused)), split(linear(P, f"{att}.key", fused))
        v = split(linear(P, f"{att}.value", r))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + mask, dim=-1)
        x = layer_norm(P, f"{att}.LayerNorm", linear(P, f"{att}.dense", merge(probs @ v)) + r)
        r = feed_forward(P, pre + ".feed_forward", x)
    return r


def nova_forward(P, items, side):
    it = torch.tensor(items)
    b, t = it.shape
    r = layer_norm(P, "LayerNorm", P["item_embedding.weight"][it])
    pos = P["position_embedding.weight"][torch.arange(t)].unsqueeze(0).expand(b, t, D)
    return nova_layers(P, r, pos, side, recbole_mask(items))


def nova_cloze_shapes():
    s = nova_shapes()
    s["position_embedding.weight"] = (MAX_LEN + 1, D)
    s["mask_embedding"] = (1, D)
    return s


def nova_bidirectional(P, x, side, valid):
    """x: [B, W, D] input embeddings, side: STREAMS x [B, W, D], valid: [B, W] real keys."""
    b, w, _ = x.shape
    pos = P["position_embedding.weight"][torch.arange(w)].unsqueeze(0).expand(b, w, D)
    mask = ((1.0 - valid.double()) * -1e9).view(b, 1, 1, w)
    return nova_layers(P, layer_norm(P, "LayerNorm", x), pos, side, mask)


def nova_cloze_forward(P, items, side):
    """Each row's items, then the mask; the mask's state replaces the last real cell's."""
    lens = [sum(1 for i in row if i) for row in items]
    b, w = len(items), max(lens) + 1
    x, valid = torch.zeros(b, w, D), torch.zeros(b, w, dtype=torch.bool)
    s = torch.zeros(STREAMS, b, w, D)
    for r in range(b):
        for c in range(lens[r]):
            x[r, c] = P["item_embedding.weight"][items[r][c]]
            s[:, r, c] = side[:, r, c]
        x[r, lens[r]] = P["mask_embedding"][0]
        valid[r, : lens[r] + 1] = True
    h = nova_bidirectional(P, x, s, valid)
    out = h[:, : len(items[0])].clone()
    for r in range(b):
        out[r, lens[r] - 1] = h[r, lens[r]]
    return out


def run_nova_masked():
    P = fill(nova_cloze_shapes())
    side = streams(ITEMS)
    b, t = len(CLOZE_ITEMS), len(CLOZE_ITEMS[0])
    x, valid = torch.zeros(b, t, D), torch.zeros(b, t, dtype=torch.bool)
    s = side.clone()
    for r in range(b):
        for c in range(t):
            if CLOZE_ITEMS[r][c] == 0:
                continue
            valid[r, c] = True
            if CLOZE_MASKED[r][c]:
                x[r, c] = P["mask_embedding"][0]
                s[:, r, c] = 0.0
            else:
                x[r, c] = P["item_embedding.weight"][CLOZE_ITEMS[r][c]]
    h = nova_bidirectional(P, x, s, valid)
    cells = [(r, c) for r in range(b) for c in range(t) if CLOZE_TARGETS[r][c]]
    states = torch.stack([h[r, c] for r, c in cells])
    targets = torch.tensor([CLOZE_TARGETS[r][c] for r, c in cells])
    loss = F.cross_entropy(states @ P["item_embedding.weight"][1:].T, targets - 1)
    loss.backward()
    return {
        "items": CLOZE_ITEMS,
        "masked": CLOZE_MASKED,
        "targets": CLOZE_TARGETS,
        "hidden": [h[r, c].tolist() for r in range(b) for c in range(t) if CLOZE_ITEMS[r][c]],
        "loss": loss.item(),
        "grads": {n: p.grad.flatten().tolist() for n, p in P.items()},
    }


def run(shapes, forward, aux):
    P = fill(shapes)
    side = streams(ITEMS)
    h = forward(P, ITEMS, side)  # [B, T, D]
    lens = [sum(1 for i in row if i) for row in ITEMS]
    last = torch.stack([h[r, lens[r] - 1] for r in range(len(ITEMS))])
    logits = last @ P["item_embedding.weight"][1:].T
    loss = F.cross_entropy(logits, torch.tensor(TARGETS) - 1)
    if aux is not None:
        loss = loss + aux(P, last, TARGETS)
    loss.backward()
    real = [h[r, c].tolist() for r in range(len(ITEMS)) for c in range(lens[r])]
    return {
        "hidden": real,
        "loss": loss.item(),
        "grads": {n: (p.grad if p.grad is not None else torch.zeros_like(p)).flatten().tolist() for n, p in P.items()},
    }


if __name__ == "__main__":
    out = {
        "items": ITEMS,
        "targets": TARGETS,
        "streams": streams(ITEMS).flatten().tolist(),
        "labels": labels().flatten().tolist(),
        "difsr": run(difsr_shapes(), difsr_forward, difsr_aux),
        "difsr_categorical": run(difsr_categorical_shapes(), difsr_categorical_forward, difsr_aux),
        "nova": run(nova_shapes(), nova_forward, None),
        "nova_cloze": run(nova_cloze_shapes(), nova_cloze_forward, None),
        "nova_cloze_masked": run_nova_masked(),
        "torch": torch.__version__,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
