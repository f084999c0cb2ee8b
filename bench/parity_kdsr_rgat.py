"""A PyTorch transcription of the released KDSR network's forward (`model_corvector.py` of
AnonymousPubCode/ECIR24-KDSR @ ae4981c, `aggregator.py` and `data_utils.py` of HoldenHu/KDSR
@ 86dfb1f: the graph of `data_utils.Data.__getitem__`,
`model_corvector.VLGraph.forward` with `use_CD` off (kdsr's correlation losses are their own
module with their own tests), `aggregator.RGATLayer`, `get_sequence_representation` with
`last_sum` (last_n 2) and `compute_full_scores`), in eval mode, for kdsr's parity test
(tests/parity_kdsr_rgat.rs reads the fixture this script writes).

  .venv/bin/python bench/parity_kdsr_rgat.py tests/fixtures/parity_kdsr_rgat.json

Parameters carry kdsr's names; the reference's are in REFERENCE_NAMES (its `a_params[r]` [D, 1]
are the rows of `rgat.a` [4, D], its `amplifier_rel_ratio` [4, 1] is `rgat.amplifier` [4]; its
RGAT `bias` and `feed_forward_layer` are never used and left out). Every parameter p (sorted by
name), element j: sin(0.37 * (j + 1) + 1.3 * p) (at half that, as the other scripts use, the
attention parameters' gradients are ~1e-5). Nodes are padded to the data's longest
window, as the reference does. Windows: repeated items, a repeated step, a window whose last
two cells are one node, a one-item window.
"""
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

import fixture

N_ITEMS, D, L = 10, 8, 6
ITEMS = [[3, 1, 4, 1, 5, 0], [9, 2, 6, 0, 0, 0], [2, 2, 7, 3, 2, 0], [8, 0, 0, 0, 0, 0], [4, 6, 6, 0, 0, 0], [3, 1, 3, 2, 0, 0]]
TARGETS = [7, 8, 4, 1, 2, 5]
NUM_ITEM = N_ITEMS + 1  # the reference's num_node: items plus the padding 0
LEAKY, DROPOUT_ATTEN, DROPOUT_OUTPUT, LAST_N = 0.1, 0.2, 0.4, 2

REFERENCE_NAMES = {
    "item_embedding.weight": "embedding.weight",
    "modality_table.image": "image_embedding.weight",
    "modality_table.text": "text_embedding.weight",
    "rgat.w": "local_agg_item.W",
    "rgat.a": "local_agg_item.a_params.{0..3}",
    "rgat.amplifier": "local_agg_item.amplifier_rel_ratio",
    "gate_hidden.weight": "modality_projection.0.weight",
    "gate_hidden.bias": "modality_projection.0.bias",
    "gate_out.weight": "modality_projection.2.weight",
    "gate_out.bias": "modality_projection.2.bias",
}
SHAPES = {
    "item_embedding.weight": (NUM_ITEM, D),
    "modality_table.image": (NUM_ITEM, D),
    "modality_table.text": (NUM_ITEM, D),
    "rgat.w": (D, D),
    "rgat.a": (4, D),
    "rgat.amplifier": (4,),
    "gate_hidden.weight": (D, D),
    "gate_hidden.bias": (D,),
    "gate_out.weight": (1, D),
    "gate_out.bias": (1,),
}


def graph(u_input, max_len):
    """data_utils.Data.__getitem__, transcribed."""
    le = len(u_input)
    u_nodes = np.unique(u_input).tolist()
    ln = len(u_nodes)
    nodes = np.asarray(u_nodes + (max_len - ln) * [0])
    at = lambda v: np.where(nodes == v)[0][0]
    adj = np.zeros((max_len, max_len))
    for i in np.arange(le):
        adj[at(u_input[i])][at(u_input[i])] = 1
    for i in np.arange(le - 1):
        u, v = at(u_input[i]), at(u_input[i + 1])
        if u == v or adj[u][v] == 4:
            continue
        if adj[v][u] == 2:
            adj[u][v] = 4
            adj[v][u] = 4
        else:
            adj[u][v] = 2
            adj[v][u] = 3
    alias_inputs = [at(item) for item in u_input] + [0] * (max_len - le)
    us_msks = [1] * le + [0] * (max_len - le)
    node_msks = [1] * ln + [0] * (max_len - ln)
    return adj, nodes, node_msks, alias_inputs, us_msks


def params():
    out = {}
    for p, name in enumerate(sorted(SHAPES)):
        n = int(np.prod(SHAPES[name]))
        v = torch.tensor([math.sin(0.37 * (j + 1) + 1.3 * p) for j in range(n)], dtype=torch.float32)
        out[name] = v.reshape(SHAPES[name]).requires_grad_(True)
    return out


def rgat(P, hidden, adj):
    """RGATLayer.forward (eval: its dropout on the masked logits is the identity)."""
    B, N = hidden.shape[0], hidden.shape[1]
    h = torch.matmul(hidden, P["rgat.w"])
    a_input = (h.repeat(1, 1, N).view(B, N * N, D) * h.repeat(1, N, 1)).view(B, N, N, D)
    alpha = -9e15 * torch.ones(B, N, N)
    for r in range(1, 5):
        e = torch.matmul(a_input, P["rgat.a"][r - 1].unsqueeze(-1))
        e = F.leaky_relu(e, LEAKY).squeeze(-1).view(B, N, N)
        alpha = torch.where(adj.eq(r), e, alpha)
    for r in range(1, 5):
        alpha = torch.where(adj.eq(r), alpha * P["rgat.amplifier"][r - 1], alpha)
    alpha = F.dropout(alpha, DROPOUT_ATTEN, training=False)
    alpha = torch.softmax(alpha, dim=-1)
    return torch.matmul(alpha, h)


def run():
    P = params()
    rows = [[i for i in r if i != 0] for r in ITEMS]
    max_len = max(len(r) for r in rows)
    batch = [graph(r, max_len) for r in rows]
    adj, nodes, node_msks, alias, mask = (torch.tensor(np.array([b[i] for b in batch])) for i in range(5))
    node_msks, mask = node_msks.float(), mask.long()
    # VLGraph.forward: the embeddings have padding_idx 0.
    h_emb = F.embedding(nodes, P["item_embedding.weight"], padding_idx=0)
    h_nodes = rgat(P, h_emb, adj.float())
    h_img = F.embedding(nodes, P["modality_table.image"], padding_idx=0)
    h_txt = F.embedding(nodes, P["modality_table.text"], padding_idx=0)
    input_h = torch.cat([x.unsqueeze(-2) for x in (h_emb, h_nodes, h_img, h_txt)], -2)  # [B, N, 4, D]
    hidden = F.relu(F.linear(input_h, P["gate_hidden.weight"], P["gate_hidden.bias"]))
    energy = F.linear(hidden, P["gate_out.weight"], P["gate_out.bias"])
    weights = torch.softmax(energy.squeeze(-1), dim=-1)
    gate = F.dropout((input_h * weights.unsqueeze(-1)).sum(dim=-2), DROPOUT_OUTPUT, training=False)
    node_hidden = gate * node_msks.unsqueeze(-1)
    # compute_full_scores with get_sequence_representation('last_sum').
    seq = torch.gather(node_hidden, 1, alias.unsqueeze(-1).expand(-1, -1, D)) * mask.float().unsqueeze(-1)
    gather_index = torch.sum(mask, dim=-1) - 1
    last = []
    for n in range(LAST_N):
        idx = gather_index - n
        idx[idx < 0] = 0
        last.append(seq.gather(1, idx.view(-1, 1, 1).expand(-1, -1, D)).squeeze(1))
    out = torch.stack(last, dim=1).sum(-2)  # [B, D]
    scores = out @ P["item_embedding.weight"][1:NUM_ITEM].T
    loss = F.cross_entropy(scores, torch.tensor(TARGETS) - 1)
    loss.backward()
    return {
        "output": out.tolist(),
        "loss": loss.item(),
        "names": sorted(SHAPES),
        "grads": {n: P[n].grad.flatten().tolist() for n in sorted(SHAPES)},
    }


if __name__ == "__main__":
    fixture.write(sys.argv[1], ITEMS, TARGETS, N_ITEMS, D, reference_names=REFERENCE_NAMES, code=run())
