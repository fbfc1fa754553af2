"""A frozen sentence encoder for task descriptions, label descriptions and few-shot examples.

The default is the packaged MiniLM-L6 (all-MiniLM-L6-v2), used the way it was trained as a
sentence encoder: mean of the last hidden states over real tokens, L2-normalised.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from .base_model import resolve_base_model
from .errors import HyperAdaptError

logger = logging.getLogger(__name__)


class SentenceEncoder(nn.Module):
    """Frozen mean-pooled sentence embeddings, cached by text.

    Args:
        name_or_path: ``"minilm"`` (packaged), a local folder or a Hub id of an encoder.
        max_length: Tokens per text.

    Example:
        >>> encoder = SentenceEncoder("minilm")  # doctest: +SKIP
        >>> encoder(["Decide whether a review is positive."]).shape
        torch.Size([1, 384])
    """

    def __init__(self, name_or_path: str = "minilm", max_length: int = 128):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = resolve_base_model(name_or_path)
        hf_logging.disable_progress_bar()
        try:
            self.model = AutoModel.from_pretrained(path, use_safetensors=True).eval().requires_grad_(False)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise HyperAdaptError(f"cannot load text encoder {name_or_path!r}: {err}") from None
        finally:
            hf_logging.enable_progress_bar()
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)
        self._cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> SentenceEncoder:
        super().train(mode)
        self.model.eval()  # always frozen
        return self

    @torch.no_grad()
    def forward(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """``[len(texts), dim]`` unit-norm embeddings (computed once per distinct text)."""
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise HyperAdaptError("cannot encode an empty text; give a non-empty description or label")
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        device = next(self.model.parameters()).device
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            enc = self.tokenizer(
                chunk, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
            ).to(device)
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            pooled = nn.functional.normalize(pooled.float(), dim=-1).cpu()
            for text, vector in zip(chunk, pooled):
                self._cache[text] = vector
        return torch.stack([self._cache[t] for t in texts])


def label_text(name: str, description: str | None) -> str:
    """How a label is put into words for the encoder: ``"name: what it means"``."""
    return f"{name}: {description}" if description else name


def example_text(example: dict[str, Any], text_fields: list[str], label: str) -> str:
    """How a labelled example is put into words for few-shot conditioning."""
    inputs = " | ".join(str(example[f]) for f in text_fields)
    return f"{inputs} -> {label}"
