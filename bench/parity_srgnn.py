"""RecBole 1.2.1's own SRGNN class on fixed weights, for kdsr's SR-GNN parity test
(tests/parity_srgnn.rs reads the fixture this script writes).

  .venv/bin/pip install --no-deps recbole==1.2.1
  .venv/bin/python bench/parity_srgnn.py tests/fixtures/parity_srgnn.json

RecBole is imported without its dependencies (logging, data frames, tensorboard), which the
model class does not use: they are stubbed. Every parameter p (sorted by name), element j:
0.5 * sin(0.37 * (j + 1) + 1.3 * p). The loss is the cross-entropy of RecBole's `forward`
output against items 1..N (kdsr never ranks the padding item; RecBole's `calculate_loss` also
scores item 0), and the gradients are those of that loss.
"""
import json
import math
import sys
import types

import torch
import torch.nn.functional as F


class _Stub(types.ModuleType):
    def __getattr__(self, k):
        if k.startswith("__"):
            raise AttributeError(k)
        return type(k, (), {"__init__": lambda self, *a, **kw: None})


for _name in ["colorlog", "colorama", "pandas", "tensorboard", "torch.utils.tensorboard", "texttable", "thop"]:
    _m = _Stub(_name)
    _m.__path__ = []
    sys.modules[_name] = _m

import recbole  # noqa: E402
from recbole.model.sequential_recommender.srgnn import SRGNN  # noqa: E402



N_ITEMS, D, STEP = 10, 8, 1
ITEMS = [[3, 1, 4, 1, 5, 0], [9, 2, 6, 0, 0, 0], [2, 2, 7, 3, 2, 0]]
TARGETS = [7, 8, 4]


class _Dataset:
    def num(self, field):
        return N_ITEMS + 1


def srgnn_config(max_len, embedding, step):
    """The settings RecBole's SRGNN reads, for batches of `max_len` columns on the CPU."""
    return {
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": "item_length",
        "NEG_PREFIX": "neg_",
        "MAX_ITEM_LIST_LENGTH": max_len,
        "device": "cpu",
        "embedding_size": embedding,
        "step": step,
        "loss_type": "CE",
    }


def build():
    model = SRGNN(srgnn_config(len(ITEMS[0]), D, STEP), _Dataset())  # float32: RecBole builds its adjacency as FloatTensor
    params = dict(model.named_parameters())
    with torch.no_grad():
        for p, name in enumerate(sorted(params)):
            t = params[name]
            v = torch.tensor([0.5 * math.sin(0.37 * (j + 1) + 1.3 * p) for j in range(t.numel())])
            t.copy_(v.reshape(t.shape))
    return model, params


if __name__ == "__main__":
    model, params = build()
    seq = torch.tensor(ITEMS)
    lens = (seq > 0).sum(1)
    out = model.forward(seq, lens)  # [B, D]
    logits = out @ model.item_embedding.weight[1:].T
    loss = F.cross_entropy(logits, torch.tensor(TARGETS) - 1)
    loss.backward()
    fixture = {
        "items": ITEMS,
        "targets": TARGETS,
        "output": out.tolist(),
        "loss": loss.item(),
        "grads": {n: p.grad.flatten().tolist() for n, p in params.items()},
        "recbole": recbole.__version__,
        "torch": torch.__version__,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(fixture, f)
