"""rxmrl: Memory Reinforcement Learning for Reactive Transformers.

Importing the package is cheap on purpose: heavy modules (torch models, datasets, sentence encoders)
load only when their subpackage is imported, so ``rxmrl --help`` answers at once.
"""

__version__ = "0.1.0"

from rxmrl.envs.registration import register_envs as _register_envs

_register_envs()  # gymnasium.make("rxmrl/TinyStoriesMRL-v0") works after `import rxmrl`
