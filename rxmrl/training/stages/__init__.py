"""The four supervised warm-start stages, one module each, on the shared ``Trainer``.

* ``joint``            -- stages 1 and 2: joint LM pre-training (stories) and interaction SFT
                          (encoder MLM + decoder AR reading the encoder's detached, noisy layer outputs)
* ``memory_attention`` -- stage 3: self-supervised memory attention (−cosine to a weighted mean of the
                          previous STM and the new encoded data)
* ``memory_aware``     -- stage 4: decoder trained through the accumulated STM, gradual unfreezing
* ``batching``         -- token rows, padding, MLM masking and the masked losses they share
* ``common``           -- parameter groups, resumable batches and the ``Trainer`` every stage builds

``rxmrl.training.supervised`` runs them in order with one checkpoint per stage.
"""

from rxmrl.training.stages.batching import episode_rows, interaction_rows, story_rows
from rxmrl.training.stages.common import StageLoop, model_group_of
from rxmrl.training.stages.joint import InteractionStageConfig, JointStageConfig, joint_step, train_joint
from rxmrl.training.stages.memory_attention import (
    MemoryAttentionStageConfig, memory_attention_step, pool_mean, pool_segments, train_memory_attention,
)
from rxmrl.training.stages.memory_aware import (
    MemoryAwareStageConfig, follow_up_logits, memory_aware_step, train_memory_aware, trainable_groups,
)

__all__ = [
    "InteractionStageConfig", "JointStageConfig", "MemoryAttentionStageConfig", "MemoryAwareStageConfig", "StageLoop", "episode_rows",
    "follow_up_logits", "interaction_rows", "joint_step", "memory_attention_step", "memory_aware_step",
    "model_group_of", "pool_mean", "pool_segments", "story_rows", "train_joint", "train_memory_attention",
    "train_memory_aware", "trainable_groups",
]
