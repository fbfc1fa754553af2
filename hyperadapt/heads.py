"""Task heads: the weights of the base model's classifier module for each task.

Two kinds share one interface, ``head(condition) -> {parameter name: tensor}``, shaped like the
base model's own classifier with the label dimension set by the task:

- `TaskHeads`: one learned head per training task (only tasks seen in training).
- `LabelSemanticHead`: each label's output row is a learned linear map of the encoding of that
  label's name and description, so a task with labels never seen is classified with no new
  parameters. It is linear in the adapted representation, so at export it is an ordinary
  classifier that peft saves with ``modules_to_save``.
"""

from __future__ import annotations

import torch
from torch import nn

from .conditioning import Condition
from .errors import HyperAdaptError


def _key(name: str) -> str:
    return name.replace(".", "__")


def _unkey(name: str) -> str:
    return name.replace("__", ".")


def _init(shape: list[int]) -> nn.Parameter:
    param = torch.empty(shape)
    if param.dim() > 1:
        nn.init.normal_(param, std=0.02)
    else:
        nn.init.zeros_(param)
    return nn.Parameter(param)


class TaskHeads(nn.Module):
    """One learned head per task.

    Args:
        head_shapes: Parameter shapes of the base model's classifier, label dimension as -1.
        num_outputs: For each task name, its number of labels (1 for regression).
        token_head_shapes: The same for the token-classification head.
        token_tasks: The tasks that are token classification (they get token heads).
    """

    def __init__(
        self,
        head_shapes: dict[str, list[int]],
        num_outputs: dict[str, int],
        token_head_shapes: dict[str, list[int]] | None = None,
        token_tasks: list[str] = (),
    ):
        super().__init__()
        self.heads = nn.ModuleDict()
        # The bias of the output layer (the parameter that is all label dimension).
        self.output_bias = next((name for name, shape in head_shapes.items() if list(shape) == [-1]), None)
        for task, width in num_outputs.items():
            head = nn.ParameterDict()
            shapes = token_head_shapes if task in token_tasks else head_shapes
            for name, shape in shapes.items():
                head[_key(name)] = _init([width if d == -1 else d for d in shape])
            self.heads[_key(task)] = head

    @torch.no_grad()
    def start_regression_at(self, task: str, value: float) -> None:
        """Start ``task``'s regression output at ``value`` (the mean of its training targets).

        From a zero bias, a target scale like 0 to 5 makes the first hundreds of steps fit the
        offset rather than the signal.
        """
        if self.output_bias is not None:
            self.heads[_key(task)][_key(self.output_bias)].fill_(value)

    def forward(self, condition: Condition) -> dict[str, torch.Tensor]:
        if condition.task is None or _key(condition.task) not in self.heads:
            raise HyperAdaptError(
                "this hypernetwork has one head per training task and none for a new task; train it with "
                "hypernetwork.head: label_semantic to classify tasks it never saw"
            )
        # Views, not the parameters themselves: under DistributedDataParallel a parameter returned
        # as is has no autograd node linking it to the outputs, so it would be taken for unused.
        return {_unkey(name): p.view_as(p) for name, p in self.heads[_key(condition.task)].items()}


class LabelSemanticHead(nn.Module):
    """Output rows from label encodings; the classifier's other layers are shared by all tasks.

    Args:
        head_shapes: Parameter shapes of the base model's classifier, label dimension as -1.
        text_dim: Size of the label encodings.
    """

    def __init__(self, head_shapes: dict[str, list[int]], text_dim: int):
        super().__init__()
        self.shared = nn.ParameterDict()
        self.weight_name = self.bias_name = None
        for name, shape in head_shapes.items():
            if -1 not in shape:
                self.shared[_key(name)] = _init(shape)
            elif len(shape) == 2:
                self.weight_name = name
                in_features = shape[1]
            else:
                self.bias_name = name
        if self.weight_name is None:
            raise ValueError(f"no output weight among the head's parameters {sorted(head_shapes)}")
        self.weight_map = nn.Linear(text_dim, in_features, bias=False)
        nn.init.normal_(self.weight_map.weight, std=0.02)
        self.bias_map = nn.Linear(text_dim, 1)
        nn.init.zeros_(self.bias_map.weight)
        nn.init.zeros_(self.bias_map.bias)

    def forward(self, condition: Condition) -> dict[str, torch.Tensor]:
        if condition.labels is None:
            raise HyperAdaptError("a label-semantic head needs the encoded labels of the task")
        labels = condition.labels.to(self.weight_map.weight.device)
        head = {_unkey(name): p.view_as(p) for name, p in self.shared.items()}  # see TaskHeads
        head[self.weight_name] = self.weight_map(labels)
        if self.bias_name is not None:
            head[self.bias_name] = self.bias_map(labels).squeeze(-1)
        return head
