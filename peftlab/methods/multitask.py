r"""Multitask prompt tuning (Wang et al. 2023, "Multitask Prompt Tuning Enables Parameter-Efficient Transfer
Learning", arXiv:2303.02861).

One prompt shared by all tasks, modulated per task by a rank-$r$ matrix (element-wise, "$\circ$"):

$$ P_k = P^{*} \circ (u_k v_k^\top), \qquad P^{*} \in \mathbb{R}^{n \times d},\ u_k \in \mathbb{R}^{n \times r},\
   v_k \in \mathbb{R}^{r \times d},\ k = 1..K $$

$u$ is `prefix_task_cols` (K x n x r), $v$ is `prefix_task_rows` (K x r x d), both N(0, 0.02) at init as in peft.
Each example says which task it is with `task_ids` (B,), passed to forward and generate. Trainable parameters:
$n d + K (n r + r d)$. In the paper the shared prompt is first distilled from source tasks and then transferred:
`prompt_tuning_init` = "AVERAGE_SOURCE_TASKS" / "EXACT_SOURCE_TASK" / "ONLY_SOURCE_SHARED" start from a saved
multitask adapter (`prompt_tuning_init_state_dict_path`, safetensors), as in HF peft.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from safetensors.torch import load_file
from torch import nn

from ..config import check_range
from ..registry import register
from .prompt_tuning import INITS, PromptEmbedding, PromptTuningConfig
from .soft_prompt import check_width, fill_model_dims, rename_keys

SOURCE_INITS = ("AVERAGE_SOURCE_TASKS", "EXACT_SOURCE_TASK", "ONLY_SOURCE_SHARED")


@dataclass
class MultitaskPromptTuningConfig(PromptTuningConfig):
    peft_type: ClassVar[str] = "MULTITASK_PROMPT_TUNING"
    allowed_inits: ClassVar[tuple[str, ...]] = INITS + SOURCE_INITS
    prompt_tuning_init_state_dict_path: str | None = None  # source-task adapter file for the *_SOURCE_* inits
    prompt_tuning_init_task: int = 0  # EXACT_SOURCE_TASK: which source task to start from
    num_ranks: int = 1  # r
    num_tasks: int = 1  # K

    def __post_init__(self):
        super().__post_init__()
        check_range("num_ranks", self.num_ranks, low=1)
        check_range("num_tasks", self.num_tasks, low=1)
        check_range("prompt_tuning_init_task", self.prompt_tuning_init_task, low=0)
        if self.prompt_tuning_init in SOURCE_INITS and not self.prompt_tuning_init_state_dict_path:
            raise ValueError(
                f"prompt_tuning_init={self.prompt_tuning_init!r} needs prompt_tuning_init_state_dict_path "
                f"(a .safetensors file of a trained multitask adapter)."
            )
        if self.num_transformer_submodules == 2:
            raise ValueError(
                "num_transformer_submodules=2 (decoder prompts) is not supported here: use 1 or None."
            )


class MultitaskPromptEmbedding(PromptEmbedding):
    def __init__(self, config: MultitaskPromptTuningConfig, word_embeddings: nn.Embedding):
        super().__init__(config, word_embeddings)  # P*, with the RANDOM / SAMPLE_VOCAB / TEXT init
        n, d, r, k = config.num_virtual_tokens, config.token_dim, config.num_ranks, config.num_tasks
        device = word_embeddings.weight.device
        self.num_tasks = k
        self.prefix_task_cols = nn.Parameter(torch.randn(k, n, r, device=device) * 0.02)  # u: (K, n, r)
        self.prefix_task_rows = nn.Parameter(torch.randn(k, r, d, device=device) * 0.02)  # v: (K, r, d)
        if config.prompt_tuning_init in SOURCE_INITS and not config.inference_mode:
            self._init_from_source(config)

    @torch.no_grad()
    def _init_from_source(self, config: MultitaskPromptTuningConfig) -> None:
        source = load_file(config.prompt_tuning_init_state_dict_path)  # peft's keys
        self.embedding.weight.copy_(source["prompt_embeddings"])
        if config.prompt_tuning_init == "ONLY_SOURCE_SHARED":
            return
        cols, rows = source["prefix_task_cols"], source["prefix_task_rows"]  # (K_src, n, r), (K_src, r, d)
        if config.prompt_tuning_init == "AVERAGE_SOURCE_TASKS":
            cols, rows = cols.mean(0, keepdim=True), rows.mean(0, keepdim=True)
        else:
            check_range(
                "prompt_tuning_init_task", config.prompt_tuning_init_task, low=0, high=cols.shape[0] - 1
            )
            cols, rows = (
                cols[config.prompt_tuning_init_task][None],
                rows[config.prompt_tuning_init_task][None],
            )
        self.prefix_task_cols.copy_(cols.expand_as(self.prefix_task_cols))  # every target task starts there
        self.prefix_task_rows.copy_(rows.expand_as(self.prefix_task_rows))

    def prompts(self, batch_size: int, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        if task_ids is None:
            if self.num_tasks > 1:
                raise ValueError(
                    f"pass task_ids (B,) with values in [0, {self.num_tasks}): there are several tasks."
                )
            task_ids = torch.zeros(batch_size, dtype=torch.long, device=self.prefix_task_cols.device)
        task_ids = torch.as_tensor(task_ids, device=self.prefix_task_cols.device).long().reshape(-1)
        if task_ids.numel() != batch_size or int(task_ids.min()) < 0 or int(task_ids.max()) >= self.num_tasks:
            raise ValueError(
                f"task_ids={task_ids.tolist()} must hold {batch_size} values in [0, {self.num_tasks})."
            )
        shared = self.embedding.weight[: self.num_virtual_tokens]  # P*: (n, d)
        task = (
            self.prefix_task_cols[task_ids] @ self.prefix_task_rows[task_ids]
        )  # (B, n, r) @ (B, r, d) = (B, n, d)
        return shared * task  # (B, n, d), Hadamard product


def apply_multitask(model: nn.Module, config: MultitaskPromptTuningConfig, adapter_name: str):
    fill_model_dims(config, model)
    return MultitaskPromptEmbedding(config, check_width(config, model))


register(
    "multitask_prompt_tuning",
    MultitaskPromptTuningConfig,
    apply_multitask,
    to_peft_keys=rename_keys(
        {
            "prompt_modules.embedding.weight": "prompt_embeddings",
            "prompt_modules.prefix_task_cols": "prefix_task_cols",
            "prompt_modules.prefix_task_rows": "prefix_task_rows",
        }
    ),
)
