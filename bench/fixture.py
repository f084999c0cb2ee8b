"""Shared by the parity scripts in bench/: the fields every fixture has, and writing it."""
import json

import torch


def write(path, items, targets, n_items, dim, **fields):
    """Writes a fixture: the windows, their targets, the catalogue size, the width, the torch
    version, and the script's own fields."""
    fixture = {"items": items, "targets": targets, "n_items": n_items, "dim": dim, "torch": torch.__version__}
    fixture.update(fields)
    with open(path, "w") as f:
        json.dump(fixture, f)
