"""Fashion-MNIST / MNIST loading with verified files and clear errors.

Sources, in order:
  1. a data directory holding the four standard IDX `.gz` files (`--data-dir` or $ROWGEN_DATA_DIR);
  2. the folder of Debian's `dataset-fashion-mnist` package, when installed;
  3. torchvision's normal download into a cache folder (for users who are online).
Every file's decompressed bytes are checked against the official release (sha256), so a
truncated or altered file fails with its name rather than with a numpy traceback.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# dataset -> its torchvision class, for the download; torchvision is imported only then (its
# import alone takes about 2 s of CPU, paid by every command that loads data otherwise).
DATASETS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes, the only type the MNIST family uses
DATA_DIR_ENV = "ROWGEN_DATA_DIR"
DEBIAN_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rowgen"

FILES = {  # split -> (images, labels)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# sha256 of the *decompressed* official files: stable however a copy was re-gzipped (Debian's is).
OFFICIAL_SHA256 = {
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
}


class DataError(RuntimeError):
    """The data could not be found or a file is damaged; the message says which and what to do."""


@dataclass(frozen=True)
class Split:
    """One split as tensors: images float32 (N, 28, 28) in [0, 1], labels int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str


def load_split(
    dataset: str = "fashion-mnist",
    split: str = "train",
    data_dir: str | Path | None = None,
    verify: bool = True,
    download: bool = True,
    cache_dir: Path = DEFAULT_CACHE,
) -> Split:
    """Load `split` ("train" or "test") of `dataset` from the first source that has it."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir is not None:
        folder = Path(data_dir)
        missing = [f for f in FILES[split] if not (folder / f).is_file()]
        if missing:
            raise DataError(
                f"data directory {folder} lacks {', '.join(missing)}: it must hold the four "
                f"standard {dataset} IDX .gz files ({', '.join(sum(FILES.values(), ()))})"
            )
        return _load_gz_folder(dataset, split, folder, verify)
    debian = DEBIAN_DIRS.get(dataset)
    if debian is not None and all((debian / f).is_file() for f in FILES[split]):
        return _load_gz_folder(dataset, split, debian, verify)
    if download:
        try:
            return _load_torchvision(dataset, split, cache_dir, verify)
        except (OSError, RuntimeError) as exc:
            reason = f"the download into {cache_dir} failed ({exc})"
    else:
        reason = "downloading is switched off"
    raise DataError(
        f"no {dataset} data found and {reason}. Give it one of three ways:\n"
        f"  1. --data-dir DIR (or ${DATA_DIR_ENV}=DIR), DIR holding the four IDX .gz files;\n"
        f"  2. apt-get install dataset-{dataset} (installs to /usr/share/datasets/{dataset});\n"
        f"  3. go online once: torchvision downloads it into {cache_dir}."
    )


def _load_gz_folder(dataset: str, split: str, folder: Path, verify: bool) -> Split:
    """Decompress and check the split's two files, then parse them."""
    contents = []
    for name in FILES[split]:
        data = _gunzip(folder / name)
        if verify:
            _check_sha256(dataset, folder / name, data)
        contents.append(data)
    return _parse(split, contents, source=str(folder))


def _load_torchvision(dataset: str, split: str, cache_dir: Path, verify: bool) -> Split:
    import torchvision

    ds_cls = getattr(torchvision.datasets, DATASETS[dataset])
    ds_cls(str(cache_dir), train=split == "train", download=True)  # md5-checked by torchvision
    raw = cache_dir / DATASETS[dataset] / "raw"
    contents = []
    for name in FILES[split]:
        path = raw / name.removesuffix(".gz")
        data = path.read_bytes()
        if verify:
            _check_sha256(dataset, path, data)
        contents.append(data)
    return _parse(split, contents, source=f"torchvision download ({cache_dir})")


def _gunzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path} is not a readable gzip file ({exc}): it is truncated or corrupt; "
            "download it again or point --data-dir at a good copy"
        ) from exc


def _check_sha256(dataset: str, path: Path, data: bytes) -> None:
    expected = OFFICIAL_SHA256[dataset][path.name.removesuffix(".gz")]
    if hashlib.sha256(data).hexdigest() != expected:
        raise DataError(
            f"{path} does not match the official {dataset} release (sha256 of its content "
            "differs): it is corrupt or another file; replace it, or pass --no-verify to use "
            "your own IDX data on purpose"
        )


def read_idx(data: bytes, name: str, ndim: int) -> np.ndarray:
    """The contents of an IDX file of unsigned bytes with `ndim` dimensions (the MNIST family's
    format: a 4-byte magic 0x0000 0x08 ndim, ndim big-endian uint32 sizes, then the bytes) as a
    uint8 array; `name` is the file's, for the messages."""
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes((0, 0, IDX_UBYTE, ndim)):
        raise ValueError(f"{name} is not an IDX file of bytes with {ndim} dimensions")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != math.prod(shape):
        raise ValueError(f"{name} holds {len(data) - header} bytes; its header says {shape}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _parse(split: str, contents: list[bytes], source: str) -> Split:
    """Parse the split's two decompressed IDX files (images, labels)."""
    (images_name, labels_name), (images_data, labels_data) = FILES[split], contents
    try:
        images = torch.from_numpy(read_idx(images_data, images_name.removesuffix(".gz"), 3).copy())
        labels = torch.from_numpy(read_idx(labels_data, labels_name.removesuffix(".gz"), 1).copy())
    except ValueError as exc:
        raise DataError(f"the {split} IDX files from {source} could not be parsed ({exc})") from exc
    if images.ndim != 3 or tuple(images.shape[1:]) != (28, 28) or len(labels) != len(images):
        raise DataError(
            f"the {split} files from {source} hold images of shape {tuple(images.shape)} and "
            f"{len(labels)} labels; expected (N, 28, 28) and N labels"
        )
    return Split(images.float().div_(255.0), labels.long(), source)
