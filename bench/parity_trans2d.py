"""A PyTorch transcription of Trans2D's reference forward (urielsinger/Trans2D @ f13eef6:
`modeling_bert2D.BertModel2D` with `inputs_embeds` and an attention mask, its `Linear2D`,
`BertSelfAttention` 2D attention, `BertSelfOutput`, `BertIntermediate`, `BertOutput`), in eval
mode, with kdsr's next-item head (the mean over channels at the last real cell, scored against
the ID table rows 1..N, cross-entropy), for kdsr's Trans2D parity test (tests/parity_trans2d.rs
reads the fixture this script writes).

  .venv/bin/python bench/parity_trans2d.py tests/fixtures/parity_trans2d.json

Channels: the ID embedding and two modality streams (fixed inputs). The attention keeps the
reference's 7-dimensional broadcasts. kdsr's two stated deviations are applied here too, marked
DEVIATION: padding cells are masked as keys (the reference's `SequenceTransformer` passes an
all-ones mask) and left out of the feature term; BERT's token-type row is left out. A row
without padding is unaffected by either. Every parameter p (sorted by name), element j:
0.5 * sin(0.37 * (j + 1) + 1.3 * p).
"""
import math
import sys

import torch
import torch.nn.functional as F

import fixture

N_ITEMS, D, L, C, INNER = 10, 8, 6, 3, 16
ITEMS = [[3, 1, 4, 1, 5, 9], [9, 2, 6, 0, 0, 0], [2, 2, 7, 3, 2, 0], [8, 0, 0, 0, 0, 0]]
TARGETS = [7, 8, 4, 1]
EPS = 1e-12


def streams():
    """Two modality streams [B, L, D] (non-zero at padding cells too)."""
    b = len(ITEMS)
    j = torch.arange(b * L * D, dtype=torch.float64).view(b, L, D)
    return [(0.3 * torch.cos(0.21 * j + k)).float() for k in range(2)]


def param_shapes(layers, heads, dh):
    hd = heads * dh
    shapes = {
        "item_embedding.weight": (N_ITEMS + 1, D),
        "position_embedding.weight": (L, D),
        "LayerNorm.weight": (C, D),
        "LayerNorm.bias": (C, D),
    }
    for i in range(layers):
        p = f"layer.{i}."
        for name, (inp, out) in {"query": (D, hd), "key": (D, hd), "value": (D, hd), "dense": (hd, D)}.items():
            shapes[p + f"attention.{name}.weight"] = (C, out, inp)
            shapes[p + f"attention.{name}.bias"] = (C, out)
        shapes[p + "attention.alpha"] = (3,)
        shapes[p + "attention.LayerNorm.weight"] = (C, D)
        shapes[p + "attention.LayerNorm.bias"] = (C, D)
        shapes[p + "intermediate.weight"] = (C, INNER, D)
        shapes[p + "intermediate.bias"] = (C, INNER)
        shapes[p + "output.weight"] = (C, D, INNER)
        shapes[p + "output.bias"] = (C, D)
        shapes[p + "LayerNorm.weight"] = (C, D)
        shapes[p + "LayerNorm.bias"] = (C, D)
    return shapes


def linear2d(P, name, x):
    """The reference's Linear2D.forward: x [.., C, in] -> [.., C, out]."""
    size = x.size()
    x = x.reshape(-1, *size[-2:])
    res = (x.unsqueeze(-2) * P[name + ".weight"].unsqueeze(0)).sum(-1) + P[name + ".bias"].unsqueeze(0)
    return res.view(*size[:-1], -1)


def layer_norm(P, name, x):
    return F.layer_norm(x, [C, D], P[name + ".weight"], P[name + ".bias"], EPS)


def self_attention(P, p, hidden, ext_mask, mask, heads, dh):
    def split(x):  # transpose_for_scores: [B, L, C, H*dh] -> [B, H, L, C, dh]
        return x.view(*x.size()[:-1], heads, -1).permute(0, 3, 1, 2, 4)

    q = split(linear2d(P, p + "query", hidden))
    k = split(linear2d(P, p + "key", hidden))
    v = split(linear2d(P, p + "value", hidden))
    full_attn = (q.unsqueeze(-1).unsqueeze(-1) * k.unsqueeze(2).unsqueeze(2).transpose(4, 6)).sum(4)
    time_attn = (q.unsqueeze(3) * k.unsqueeze(2)).sum([4, 5]).unsqueeze(-2).unsqueeze(-2)
    # DEVIATION: the feature term sums over real cells only.
    m = mask.view(mask.size(0), 1, -1, 1, 1)
    feature_attn = ((q * m).unsqueeze(4) * (k * m).unsqueeze(3)).sum([2, 5]).unsqueeze(2).unsqueeze(-1)
    alpha = P[p + "alpha"]
    scores = alpha[0] * full_attn + alpha[1] * feature_attn + alpha[2] * time_attn
    scores = scores / math.sqrt(dh)
    scores = scores + ext_mask.unsqueeze(-2).unsqueeze(-2)
    probs = torch.softmax(scores.view(*scores.size()[:-2], -1), dim=-1).view(scores.shape)
    context = (v.unsqueeze(2).unsqueeze(2) * probs.unsqueeze(-1).transpose(-3, -2)).sum([4, 5])
    context = context.permute(0, 2, 3, 1, 4).contiguous()
    return context.view(*context.size()[:-2], heads * dh)


def run(layers, heads, dh):
    shapes = param_shapes(layers, heads, dh)
    P = {}
    for pi, name in enumerate(sorted(shapes)):
        n = math.prod(shapes[name])
        j = torch.arange(n, dtype=torch.float64)
        P[name] = (0.5 * torch.sin(0.37 * (j + 1) + 1.3 * pi)).float().view(shapes[name]).requires_grad_(True)

    items = torch.tensor(ITEMS)
    mask = (items != 0).float()
    # DEVIATION: padding keys are masked (get_extended_attention_mask of the real cells).
    ext_mask = (1.0 - mask)[:, None, None, :] * -10000.0
    feats = torch.stack([F.embedding(items, P["item_embedding.weight"])] + streams(), dim=2)  # [B, L, C, D]
    # BertEmbeddings: + position (per channel); DEVIATION: no token-type row; LN over [C, D].
    h = layer_norm(P, "LayerNorm", feats + P["position_embedding.weight"][:L].unsqueeze(-2))
    for i in range(layers):
        p = f"layer.{i}."
        ctx = self_attention(P, p + "attention.", h, ext_mask, mask, heads, dh)
        att = layer_norm(P, p + "attention.LayerNorm", linear2d(P, p + "attention.dense", ctx) + h)
        inter = F.gelu(linear2d(P, p + "intermediate", att))
        h = layer_norm(P, p + "LayerNorm", linear2d(P, p + "output", inter) + att)
    last = (mask.sum(-1).long() - 1).view(-1, 1, 1, 1).expand(-1, 1, C, D)
    out = h.gather(1, last).squeeze(1).mean(1)  # [B, D]
    logits = out @ P["item_embedding.weight"][1:].T
    loss = F.cross_entropy(logits, torch.tensor(TARGETS) - 1)
    loss.backward()
    return {
        "layers": layers,
        "heads": heads,
        "head_dim": dh,
        "output": out.tolist(),
        "loss": loss.item(),
        "names": sorted(shapes),
        "grads": {n: P[n].grad.flatten().tolist() for n in sorted(shapes)},
    }


if __name__ == "__main__":
    # The reference's full-width heads (d_h = D), one layer; split heads, two layers.
    fixture.write(
        sys.argv[1], ITEMS, TARGETS, N_ITEMS, D,
        inner=INNER,
        streams=[s.flatten().tolist() for s in streams()],
        full=run(1, 2, D),
        split=run(2, 2, D // 2),
    )
