"""A character corpus from the documentation that ships with CPython (``pydoc_data.topics``).

The text is the topics concatenated in sorted key order (about 465,000 characters on Python 3.11). The
vocabulary is the sorted set of characters of the whole text; the last ``VAL_FRACTION`` of the text is the
validation split. The text depends on the Python version, so :attr:`Corpus.sha1` identifies it.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import torch

VAL_FRACTION = 0.1


@dataclass(frozen=True)
class Corpus:
    """The corpus: ``vocab`` (str of distinct characters, index = token id), ``train``/``val`` (N,) int64 ids."""

    vocab: str
    train: torch.Tensor
    val: torch.Tensor
    sha1: str

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (len(text),) int64; raises KeyError on a character outside the vocabulary."""
        index = {c: i for i, c in enumerate(self.vocab)}
        return torch.tensor([index[c] for c in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor) -> str:
        """The text of a 1-d tensor of token ids."""
        return "".join(self.vocab[i] for i in ids.tolist())


@functools.lru_cache(maxsize=1)
def load_chars() -> Corpus:
    """Build (once per process) the corpus from ``pydoc_data.topics``."""
    from pydoc_data.topics import topics

    text = "".join(topics[key] for key in sorted(topics))
    vocab = "".join(sorted(set(text)))
    lookup = torch.zeros(max(map(ord, vocab)) + 1, dtype=torch.long)
    lookup[torch.tensor([ord(c) for c in vocab])] = torch.arange(len(vocab))
    ids = lookup[torch.tensor([ord(c) for c in text])]
    cut = int(len(ids) * (1 - VAL_FRACTION))
    return Corpus(vocab, ids[:cut], ids[cut:], hashlib.sha1(text.encode()).hexdigest())
