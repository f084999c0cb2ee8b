"""A PyTorch transcription of MMSR's reference forward (HoldenHu/MMSR @ 51adae8: the graph of
`data_utils.Data.__getitem__`, `model.VLGraph.forward` with auxiliary_info ['pos',
'node_type'], `aggregator.HeteAttenLayer` with fusion_type 'asy_mask', readout 'last', scores
against the item rows), in eval mode, for kdsr's MMSR parity test (tests/parity_mmsr.rs reads
the fixture this script writes).

  .venv/bin/python bench/parity_mmsr.py tests/fixtures/parity_mmsr.json

Two variants: "code" keeps the reference's K = V = Q (its W_K and W_V unused); "paper" uses
W_K and W_V. Every parameter p (sorted by name), element j: 0.5 * sin(0.37 * (j + 1) + 1.3 * p),
written into the fixture. Nodes are padded to a dataset-wide count, as the reference does.
"""
import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

N_ITEMS, K_CLUSTERS, LINK_K, D, L, MAX_NODES = 10, 4, 2, 8, 6, 24
ITEMS = [[3, 1, 4, 1, 5, 0], [9, 2, 6, 0, 0, 0], [2, 2, 7, 3, 2, 0], [8, 0, 0, 0, 0, 0]]
TARGETS = [7, 8, 4, 1]
# Local cluster ids per item (row 0 = padding item): two distinct clusters per modality.
IMAGE_LINKS = [[i % 4, (i + 1) % 4] for i in range(N_ITEMS + 1)]
TEXT_LINKS = [[(3 * i) % 4, (3 * i + 2) % 4] for i in range(N_ITEMS + 1)]
NUM_ITEM = N_ITEMS + 1  # the reference's num_node: items plus the padding 0
LEAKY = 0.1


def graph(u_input, image_input, text_input, max_len):
    """data_utils.Data.__getitem__, transcribed (no noise)."""
    le = len(u_input)
    u_nodes = np.unique(u_input).tolist()
    i_nodes = np.unique([y for x in image_input for y in x]).tolist()
    t_nodes = np.unique([y for x in text_input for y in x]).tolist()
    nodes = u_nodes + i_nodes + t_nodes
    nodes = np.asarray(nodes + (max_len - len(nodes)) * [0])
    node_type_mask = [1] * len(u_nodes) + [2] * len(i_nodes) + [3] * len(t_nodes)
    node_type_mask = node_type_mask + (max_len - len(node_type_mask)) * [0]
    adj = np.zeros((max_len, max_len))
    at = lambda v: np.where(nodes == v)[0][0]
    for i in np.arange(le):
        item_idx = at(u_input[i])
        adj[item_idx][item_idx] = 1
        for img in image_input[i]:
            adj[at(img)][at(img)] = 1
            adj[item_idx][at(img)] = 5
            adj[at(img)][item_idx] = 6
        for txt in text_input[i]:
            adj[at(txt)][at(txt)] = 1
            adj[item_idx][at(txt)] = 7
            adj[at(txt)][item_idx] = 8
        for img in image_input[i]:
            for txt in text_input[i]:
                adj[at(img)][at(txt)] = 9
                adj[at(txt)][at(img)] = 10

    def link(u, v):
        if adj[v][u] == 2:
            adj[u][v] = 4
            adj[v][u] = 4
        else:
            adj[u][v] = 2
            adj[v][u] = 3

    for i in np.arange(le - 1):
        u, v = at(u_input[i]), at(u_input[i + 1])
        if u == v or adj[u][v] == 4:
            continue
        link(u, v)
        for bundle in (image_input, text_input):
            for a in bundle[i]:
                for b in bundle[i + 1]:
                    u, v = at(a), at(b)
                    if u == v or adj[u][v] == 4:
                        continue
                    link(u, v)
    alias_inputs = [at(item) for item in u_input] + [0] * (max_len - le)
    u_input = u_input + [0] * (max_len - le)
    us_msks = [1] * le + [0] * (max_len - le)
    node_pos_matrix = np.zeros((max_len, max_len))
    n_idx = 0
    for item in u_nodes:
        node_pos_matrix[n_idx][[k for k, s in enumerate(u_input) if item == s]] = 1
        n_idx += 1
    for img in i_nodes:
        node_pos_matrix[n_idx][[k for k, s in enumerate(image_input) if img in s]] = 1
        n_idx += 1
    for txt in t_nodes:
        node_pos_matrix[n_idx][[k for k, s in enumerate(text_input) if txt in s]] = 1
        n_idx += 1
    return adj, nodes, node_type_mask, node_pos_matrix, us_msks, alias_inputs


def params():
    shapes = {
        "embedding.weight": (NUM_ITEM + 2 * K_CLUSTERS, D),
        "pos_embedding.weight": (150, D),
        "node_type_embedding.weight": (4, D),
        "w_pos_type": (3 * D, D),
        "local_agg.W_Q": (4, D, D),
        "local_agg.W_K": (4, D, D),
        "local_agg.W_V": (4, D, D),
        "local_agg.projection.0.weight": (D, D),
        "local_agg.projection.0.bias": (D,),
        "local_agg.projection.2.weight": (1, D),
        "local_agg.projection.2.bias": (1,),
    }
    for r in range(4):
        shapes[f"local_agg.a_params.{r}"] = (D, 1)
    out = {}
    for p, name in enumerate(sorted(shapes)):
        n = int(np.prod(shapes[name]))
        v = torch.tensor([0.5 * math.sin(0.37 * (j + 1) + 1.3 * p) for j in range(n)], dtype=torch.float32)
        out[name] = v.reshape(shapes[name]).requires_grad_(True)
    return out


def layer(P, hidden, adj, node_type_mask, kv_equal_q):
    """HeteAttenLayer.forward, fusion_type 'asy_mask', eval mode (dropout is the identity)."""
    B, N = hidden.shape[0], hidden.shape[1]
    flat, types = hidden.reshape(-1, D), node_type_mask.reshape(-1)

    def typed(W):
        out = torch.zeros(B * N, D)
        for n in range(1, 4):
            idx = types == n
            out[idx, :] = torch.matmul(flat, W[n])[idx, :]
        return out.reshape(B, N, D)

    q = typed(P["local_agg.W_Q"])
    k, v = (q, q) if kv_equal_q else (typed(P["local_agg.W_K"]), typed(P["local_agg.W_V"]))

    def homo(h):
        a_input = (h.repeat(1, 1, N).view(B, N * N, D) * h.repeat(1, N, 1)).view(B, N, N, D)
        alpha = -9e15 * torch.ones(B, N, N)
        for r in range(1, 5):
            e = F.leaky_relu(torch.matmul(a_input, P[f"local_agg.a_params.{r - 1}"]), LEAKY).squeeze(-1)
            alpha = torch.where(adj.eq(r), e, alpha)
        w = torch.softmax(alpha, dim=-1)
        return w, torch.matmul(w, h)

    def hete(value):
        s = torch.matmul(q, k.transpose(-2, -1))
        scores = -9e15 * torch.ones_like(s)
        for r in [1] + list(range(5, 11)):
            scores = torch.where(adj.eq(r), s, scores)
        w = torch.softmax(F.leaky_relu(scores, LEAKY), dim=-1)
        return w, torch.matmul(w, value)

    _, homo_output = homo(v)
    _, hete_output = hete(v)
    ba_scores, _ = homo(hete_output)
    noninvasive_ba = torch.matmul(ba_scores, v)
    ab_scores, _ = hete(homo_output)
    noninvasive_ab = torch.matmul(ab_scores, v)
    input_h = torch.cat((noninvasive_ab.unsqueeze(-2), noninvasive_ba.unsqueeze(-2)), -2)
    energy = F.linear(
        F.relu(F.linear(input_h, P["local_agg.projection.0.weight"], P["local_agg.projection.0.bias"])),
        P["local_agg.projection.2.weight"],
        P["local_agg.projection.2.bias"],
    )
    weights = torch.softmax(energy.squeeze(-1), dim=-1)
    return (input_h * weights.unsqueeze(-1)).sum(dim=-2)


def run(kv_equal_q):
    P = params()
    batch = []
    for row in ITEMS:
        u = [i for i in row if i != 0]
        img = [[NUM_ITEM + c for c in IMAGE_LINKS[i]] for i in u]
        txt = [[NUM_ITEM + K_CLUSTERS + c for c in TEXT_LINKS[i]] for i in u]
        batch.append(graph(u, img, txt, MAX_NODES))
    adj, nodes, types, pos, mask, alias = (torch.tensor(np.array([b[i] for b in batch])) for i in range(6))
    adj, pos = adj.float(), pos.float()
    h = F.embedding(nodes, P["embedding.weight"])
    type_emb = F.embedding(types, P["node_type_embedding.weight"])
    pos_emb = torch.matmul(pos, P["pos_embedding.weight"][:MAX_NODES]) / (pos.sum(-1, keepdim=True) + 1e-9)
    pos_emb = pos_emb * torch.clamp(types, max=1).unsqueeze(-1)
    h = torch.matmul(torch.cat([h, type_emb, pos_emb], -1), P["w_pos_type"])
    h = layer(P, h, adj, types, kv_equal_q) * torch.clamp(types, max=1).unsqueeze(-1)
    seq = torch.gather(h, 1, alias.unsqueeze(-1).expand(-1, -1, D)) * mask.unsqueeze(-1)
    last = (mask.sum(-1) - 1).view(-1, 1, 1).expand(-1, -1, D)
    out = seq.gather(1, last).squeeze(1)  # [B, D]
    logits = out @ P["embedding.weight"][1:NUM_ITEM].T
    loss = F.cross_entropy(logits, torch.tensor(TARGETS) - 1)
    loss.backward()
    return {
        "output": out.tolist(),
        "loss": loss.item(),
        "weights": {n: p.detach().flatten().tolist() for n, p in P.items()},
        "grads": {n: (p.grad.flatten().tolist() if p.grad is not None else [0.0] * p.numel()) for n, p in P.items()},
    }


if __name__ == "__main__":
    fixture = {
        "items": ITEMS,
        "targets": TARGETS,
        "n_items": N_ITEMS,
        "clusters": K_CLUSTERS,
        "link_k": LINK_K,
        "dim": D,
        "image_links": IMAGE_LINKS,
        "text_links": TEXT_LINKS,
        "code": run(True),
        "paper": run(False),
        "torch": torch.__version__,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(fixture, f)
