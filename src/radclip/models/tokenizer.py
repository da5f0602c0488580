"""Tokenisers for the text towers.

* :class:`HashTokenizer`: dependency-free word hashing for the ``tiny`` text tower (tests, no
  downloads): lower-cased words -> ``1 + crc32(word) % (vocab - 2)``, 0 = padding, and an
  end-of-text id (``vocab - 1``) closes the sequence. Deterministic across processes.
* :func:`hf_tokenizer`: a Hugging Face tokenizer from a local folder (offline).

Both return ``{"input_ids": (B, L) long, "attention_mask": (B, L) long}`` with ``L <= context_length``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import Any

import torch

_WORD = re.compile(r"[a-z0-9]+")


class HashTokenizer:
    """Word-hash tokenizer: no vocabulary file, stable ids, ``context_length`` tokens at most."""

    def __init__(self, vocab_size: int = 4096, context_length: int = 77) -> None:
        if vocab_size < 8:
            raise ValueError(f"vocab_size must be at least 8, got {vocab_size}")
        self.vocab_size = vocab_size
        self.context_length = context_length
        self.eot_id = vocab_size - 1

    def ids(self, text: str) -> list[int]:
        words = _WORD.findall(text.lower())[: self.context_length - 1]
        return [1 + zlib.crc32(w.encode()) % (self.vocab_size - 2) for w in words] + [self.eot_id]

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        rows = [self.ids(t) for t in texts]
        width = max(len(r) for r in rows) if rows else 1
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def hf_tokenizer(path: str, context_length: int) -> Any:
    """A callable ``texts -> {"input_ids", "attention_mask"}`` around a local Hugging Face tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)

    def encode(texts: Sequence[str]) -> dict[str, torch.Tensor]:
        out = tok(list(texts), padding=True, truncation=True, max_length=context_length, return_tensors="pt")
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    return encode
