"""hyperadapt: one hypernetwork that generates adapters for a frozen transformer from a task condition."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["from_pretrained"]


def from_pretrained(
    base_model: Any, folder: Any, revision: str | None = None, token: Any = None
) -> nn.Module:
    """Load a generated bottleneck adapter onto its base model; see `hyperadapt.bottleneck.from_pretrained`.

    (LoRA and (IA)^3 adapters are plain peft folders: load them with ``PeftModel.from_pretrained``.)
    """
    from .bottleneck import from_pretrained as load

    return load(base_model, folder, revision=revision, token=token)
