"""A PyTorch transcription of MMSRec's reference forward (kz-song/MMSRec @ daef426:
`fusion.FusionEncoderForMaskedLM.prediction` and `modality_embedding_hidden`, with
`fusion_module.FusionInputTransform`, `FusionEmbedding`, `FusionOutputTransform` and
`transformer.Transformer`, i.e. PyTorch's own `nn.TransformerEncoder`), in eval mode, scored
as in its masked-item training (`cos / τ`, cross-entropy), for kdsr's MMSRec parity test
(tests/parity_mmsrec.rs reads the fixture this script writes). A second part transcribes the
masked-item training step itself (`FusionEncoderForMaskedLM.mlm`) with its random draws fixed
(`CLOZE`: which cells are targets, and whether each is masked, replaced or kept): the states at
the target cells, the loss and the gradients.

  .venv/bin/python bench/parity_mmsrec.py tests/fixtures/parity_mmsrec.json

Windows are right-aligned in rows of width L + 1 whose last id is the mask, as the reference
lays them out. The modality features enter after the reference's input Linear (kdsr's
modality projection): two fixed tables S_m [N + 1, D] stand for `P_m f_m(i)`. Every kdsr
parameter p (sorted by name), element j, is `base + amp * sin(0.37 * (j + 1) + 1.3 * p)`
(`pattern`: LayerNorm weights 1 ± 0.2, biases ± 0.1, the rest ± 0.5, so that items stay apart
through the post-LN layers), loaded into the PyTorch modules; gradients are read back under
kdsr's names.
"""
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import fixture

N_ITEMS, D, L, M, HEADS, INNER, LAYERS, TAU = 10, 8, 6, 2, 2, 16, 2, 0.05
ITEMS = [[3, 1, 4, 1, 5, 9], [9, 2, 6, 0, 0, 0], [2, 2, 7, 3, 2, 0], [8, 0, 0, 0, 0, 0]]
TARGETS = [7, 8, 4, 1]
MASK_ID = -1  # stands for the reference's id 1 (its items start at 3)
# Cloze rows (left-aligned here, right-aligned for the reference): per cell (input item, masked,
# target; 0 none). Row 0: a masked target, a replaced one (1 -> 6), a kept one, two plain cells
# and the masked last; row 3: one item, masked.
CLOZE = [
    [(3, 1, 3), (6, 0, 1), (4, 0, 4), (1, 0, 0), (5, 0, 0), (9, 1, 9)],
    [(9, 0, 0), (2, 1, 2), (6, 1, 6)],
    [(2, 0, 0), (2, 0, 0), (7, 0, 0), (3, 0, 0), (2, 1, 2)],
    [(8, 1, 8)],
]


def tables():
    """S_m [N + 1, D]: every item's modality stream."""
    j = torch.arange((N_ITEMS + 1) * D, dtype=torch.float64).view(N_ITEMS + 1, D)
    return [(0.3 * torch.cos(0.21 * j + m)).float() for m in range(M)]


def pattern(name, p, n):
    """Parameter `name`, the p-th in sorted order, with n elements."""
    norm = "LayerNorm" in name or name.startswith(("input_norm", "final_norm"))
    if norm and name.endswith("weight"):
        base, amp = 1.0, 0.2
    elif name.endswith("bias"):
        base, amp = 0.0, 0.1
    else:
        base, amp = 0.0, 0.5
    j = torch.arange(n, dtype=torch.float64)
    return (base + amp * torch.sin(0.37 * (j + 1) + 1.3 * p)).float()


def shapes():
    s = {
        "position_embedding.weight": (L + 1, D),
        "type_embedding.weight": (M, D),
        "mask_embedding": (1, D),
        "LayerNorm.weight": (D,),
        "LayerNorm.bias": (D,),
        "final_norm.weight": (D,),
        "final_norm.bias": (D,),
    }
    for m in range(M):
        s[f"input_norm.{m}.weight"] = (D,)
        s[f"input_norm.{m}.bias"] = (D,)
        s[f"output.{m}.dense.weight"] = (D, D)
        s[f"output.{m}.dense.bias"] = (D,)
        s[f"output.{m}.LayerNorm.weight"] = (D,)
        s[f"output.{m}.LayerNorm.bias"] = (D,)
    for l in range(LAYERS):
        a = f"layer.{l}.multi_head_attention."
        for name in ["query", "key", "value", "dense"]:
            s[a + name + ".weight"] = (D, D)
            s[a + name + ".bias"] = (D,)
        s[a + "LayerNorm.weight"] = (D,)
        s[a + "LayerNorm.bias"] = (D,)
        f = f"layer.{l}.feed_forward."
        s[f + "dense_1.weight"] = (INNER, D)
        s[f + "dense_1.bias"] = (INNER,)
        s[f + "dense_2.weight"] = (D, INNER)
        s[f + "dense_2.bias"] = (D,)
        s[f + "LayerNorm.weight"] = (D,)
        s[f + "LayerNorm.bias"] = (D,)
    return s


class Reference(nn.Module):
    """The reference's modules (the input Linear excepted), with kdsr's weights loaded."""

    def __init__(self):
        super().__init__()
        self.input_norms = nn.ModuleList([nn.LayerNorm(D) for _ in range(M)])
        self.position_embeddings = nn.Embedding(L + 1, D)
        self.modal_type_embeddings = nn.Embedding(M, D)
        self.mask_embeddings = nn.Embedding(1, D)
        self.layer_norm = nn.LayerNorm(D)
        layer = nn.TransformerEncoderLayer(D, HEADS, INNER, 0.5, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, norm=nn.LayerNorm(D), enable_nested_tensor=False)
        self.out_dense = nn.ModuleList([nn.Linear(D, D) for _ in range(M)])
        self.out_norms = nn.ModuleList([nn.LayerNorm(D) for _ in range(M)])

    def places(self):
        """kdsr name -> (tensor, row slice or None)."""
        p = {
            "position_embedding.weight": (self.position_embeddings.weight, None),
            "type_embedding.weight": (self.modal_type_embeddings.weight, None),
            "mask_embedding": (self.mask_embeddings.weight, None),
            "LayerNorm.weight": (self.layer_norm.weight, None),
            "LayerNorm.bias": (self.layer_norm.bias, None),
            "final_norm.weight": (self.encoder.norm.weight, None),
            "final_norm.bias": (self.encoder.norm.bias, None),
        }
        for m in range(M):
            p[f"input_norm.{m}.weight"] = (self.input_norms[m].weight, None)
            p[f"input_norm.{m}.bias"] = (self.input_norms[m].bias, None)
            p[f"output.{m}.dense.weight"] = (self.out_dense[m].weight, None)
            p[f"output.{m}.dense.bias"] = (self.out_dense[m].bias, None)
            p[f"output.{m}.LayerNorm.weight"] = (self.out_norms[m].weight, None)
            p[f"output.{m}.LayerNorm.bias"] = (self.out_norms[m].bias, None)
        for l, lay in enumerate(self.encoder.layers):
            a = f"layer.{l}.multi_head_attention."
            for k, name in enumerate(["query", "key", "value"]):
                rows = slice(k * D, (k + 1) * D)
                p[a + name + ".weight"] = (lay.self_attn.in_proj_weight, rows)
                p[a + name + ".bias"] = (lay.self_attn.in_proj_bias, rows)
            p[a + "dense.weight"] = (lay.self_attn.out_proj.weight, None)
            p[a + "dense.bias"] = (lay.self_attn.out_proj.bias, None)
            p[a + "LayerNorm.weight"] = (lay.norm1.weight, None)
            p[a + "LayerNorm.bias"] = (lay.norm1.bias, None)
            f = f"layer.{l}.feed_forward."
            p[f + "dense_1.weight"] = (lay.linear1.weight, None)
            p[f + "dense_1.bias"] = (lay.linear1.bias, None)
            p[f + "dense_2.weight"] = (lay.linear2.weight, None)
            p[f + "dense_2.bias"] = (lay.linear2.bias, None)
            p[f + "LayerNorm.weight"] = (lay.norm2.weight, None)
            p[f + "LayerNorm.bias"] = (lay.norm2.bias, None)
        return p

    def encode(self, ids, feats):
        """`ids` [N, W] (0 padding, MASK_ID the mask, else items), `feats` M x [N, W, D]:
        FusionInputTransform (after its Linear), FusionEmbedding, Transformer,
        FusionOutputTransform: [N, W, D]."""
        n, w = ids.shape
        hidden = torch.stack([self.input_norms[m](feats[m]) for m in range(M)], dim=2)  # [N, W, M, D]
        mask = (ids != 0).unsqueeze(-1).expand(n, w, M)  # every item has every modality
        mask_token = self.mask_embeddings(torch.tensor(0))
        hidden = torch.where(ids.reshape(n, w, 1, 1).expand_as(hidden) == MASK_ID, mask_token, hidden)
        position_ids = torch.arange(w).unsqueeze(-1).repeat(n, 1, M)
        hidden = hidden + self.position_embeddings(position_ids) + self.modal_type_embeddings(torch.arange(M))
        hidden = self.layer_norm(hidden)
        inputs = torch.flatten(hidden, 1, 2)
        out = self.encoder(inputs, src_key_padding_mask=~mask.reshape(n, -1)).reshape(hidden.shape)
        fused = torch.stack([self.out_norms[m](self.out_dense[m](out[:, :, m, :])) for m in range(M)], dim=-2)
        fused = torch.where(mask.unsqueeze(-1).expand_as(fused), fused, float(-1e4))
        return torch.max(fused, dim=-2).values


def run():
    torch.manual_seed(0)
    model = Reference().eval()
    places = model.places()
    names = sorted(shapes())
    assert sorted(places) == names
    with torch.no_grad():
        for pi, name in enumerate(names):
            v = pattern(name, pi, math.prod(shapes()[name])).view(shapes()[name])
            t, rows = places[name]
            (t if rows is None else t[rows]).copy_(v)
    S = tables()
    # User tower: right-aligned rows of width L + 1 ending with the mask.
    rows = []
    for r in ITEMS:
        u = [i for i in r if i != 0]
        rows.append([0] * (L - len(u)) + u + [MASK_ID])
    ids = torch.tensor(rows)
    feats = [S[m][ids.clamp(min=0)] for m in range(M)]
    user = F.normalize(model.encode(ids, feats)[:, -1, :], dim=-1)
    # Item tower: every item as a one-item window.
    items = torch.arange(1, N_ITEMS + 1).unsqueeze(-1)
    tower = F.normalize(model.encode(items, [S[m][items] for m in range(M)])[:, -1, :], dim=-1)
    logits = user @ tower.T / TAU
    loss = F.cross_entropy(logits, torch.tensor(TARGETS) - 1)
    loss.backward()

    def grads():
        out = {}
        for name in names:
            t, rows = places[name]
            g = t.grad if rows is None else t.grad[rows]
            out[name] = g.flatten().tolist()
        return out

    prefix = {"names": names, "output": (user / TAU).tolist(), "tower": tower.tolist(), "loss": loss.item(), "grads": grads()}
    model.zero_grad()
    # Masked-item training: right-aligned rows of width L + 1 (the last cell at the last
    # position, as the mask in prediction), masked cells read the mask token, the states at the
    # target cells scored against the item tower.
    rows, inputs, targets = [], [], []
    for r in CLOZE:
        pad = L + 1 - len(r)
        rows.append([0] * pad + [MASK_ID if masked else item for item, masked, _ in r])
        inputs.append([0] * pad + [item for item, _, _ in r])
        targets.append([0] * pad + [t for _, _, t in r])
    ids, inputs, targets = torch.tensor(rows), torch.tensor(inputs), torch.tensor(targets)
    hidden = model.encode(ids, [S[m][inputs] for m in range(M)])  # [N, W, D]
    hidden = F.normalize(hidden[targets > 0], dim=-1)
    tower = F.normalize(model.encode(items, [S[m][items] for m in range(M)])[:, -1, :], dim=-1)
    loss = F.cross_entropy(hidden @ tower.T / TAU, targets[targets > 0] - 1)
    loss.backward()
    prefix["cloze"] = {"output": (hidden / TAU).tolist(), "loss": loss.item(), "grads": grads()}
    return prefix


if __name__ == "__main__":
    fixture.write(
        sys.argv[1], ITEMS, TARGETS, N_ITEMS, D,
        heads=HEADS,
        inner=INNER,
        layers=LAYERS,
        temperature=TAU,
        tables=[s.flatten().tolist() for s in tables()],
        cloze=CLOZE,
        reference=run(),
    )
