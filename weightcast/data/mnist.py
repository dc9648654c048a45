"""MNIST from the four idx gz files in a directory the user names; nothing is downloaded.

The directory comes from the ``data_dir`` argument, else from the ``WEIGHTCAST_DATA`` variable. It may hold the
files themselves or an ``mnist/`` subfolder with them (so ``../shared/data`` and ``../shared/data/mnist`` both
work). Every file is checked after decompression: the idx magic number, the shape (60000x28x28 / 10000x28x28
uint8 images, 60000 / 10000 labels) and the label range 0..9. The ``.gz`` checksum is not checked, since
recompressed files are equally valid.
"""
from __future__ import annotations

import functools
import gzip
import os
import struct
import zlib
from pathlib import Path

import torch

from ..errors import InputError, MissingInputError
from .splits import Splits

ENV_VAR = "WEIGHTCAST_DATA"
IMAGE_MAGIC = 2051  # idx3-ubyte: unsigned bytes, 3 dimensions
LABEL_MAGIC = 2049  # idx1-ubyte: unsigned bytes, 1 dimension
FILES = {
    # key: (file name, magic, shape)
    "train_x": ("train-images-idx3-ubyte.gz", IMAGE_MAGIC, (60000, 28, 28)),
    "train_y": ("train-labels-idx1-ubyte.gz", LABEL_MAGIC, (60000,)),
    "val_x": ("t10k-images-idx3-ubyte.gz", IMAGE_MAGIC, (10000, 28, 28)),
    "val_y": ("t10k-labels-idx1-ubyte.gz", LABEL_MAGIC, (10000,)),
}


def find_mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the directory that holds the MNIST files: ``data_dir`` (or ``$WEIGHTCAST_DATA``) or its ``mnist/``."""
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR)
    if not data_dir:
        raise MissingInputError(
            "MNIST needs a data directory: pass data_dir=... (CLI: --data-dir DIR) or set "
            f"{ENV_VAR}=DIR, where DIR holds the four idx gz files or a mnist/ folder with them."
        )
    root = Path(data_dir).expanduser()
    first = FILES["train_x"][0]
    if not (root / first).exists() and (root / "mnist" / first).exists():
        return root / "mnist"
    return root


def read_idx(path: Path, magic: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Read one gzip-compressed idx file of unsigned bytes; return a uint8 tensor of exactly ``shape``.

    Raises :class:`weightcast.errors.MissingInputError` (a FileNotFoundError) or
    :class:`weightcast.errors.InputError` (a ValueError) naming the file and what was expected.
    """
    kind = f"a gzip-compressed idx file of uint8 with magic {magic} and shape {'x'.join(map(str, shape))}"
    if not path.is_file():
        raise MissingInputError(f"MNIST file not found: {path}; expected {kind} there.")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"{path} is corrupt ({e}); expected {kind}. Replace it with the original file.") from e
    header = 4 + 4 * len(shape)
    if len(raw) < header:
        raise InputError(f"{path} holds {len(raw)} bytes after decompression, too few for an idx header; "
                         f"expected {kind}.")
    found_magic, *dims = struct.unpack(f">{1 + len(shape)}I", raw[:header])
    if found_magic != magic:
        raise InputError(f"{path} has idx magic number {found_magic}; expected {kind}.")
    if tuple(dims) != shape:
        raise InputError(f"{path} has shape {'x'.join(map(str, dims))}; expected {kind}.")
    body = raw[header:]
    if len(body) != torch.Size(shape).numel():
        raise InputError(f"{path} holds {len(body)} data bytes, but its header promises "
                         f"{torch.Size(shape).numel()}; the file is truncated or padded. Expected {kind}.")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).view(shape)


@functools.lru_cache(maxsize=2)
def _load(root: Path) -> Splits:
    tensors = {key: read_idx(root / name, magic, shape) for key, (name, magic, shape) in FILES.items()}
    for key in ("train_y", "val_y"):
        top = int(tensors[key].max())
        if top > 9:
            raise InputError(f"{root / FILES[key][0]} has label {top}; expected MNIST labels 0..9.")
        tensors[key] = tensors[key].long()
    return Splits(**tensors)


def load_mnist(data_dir: str | os.PathLike | None = None) -> Splits:
    """Raw MNIST: ``train_x`` (60000, 28, 28) uint8, ``train_y`` (60000,) int64, ``val_x``/``val_y`` the 10000
    test images and labels (MNIST has no separate validation set; the test set serves as one).

    Results are cached per directory for the process (about 55 MB); do not modify them in place.
    """
    return _load(find_mnist_dir(data_dir).resolve())
