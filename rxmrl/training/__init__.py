"""Training: the shared loop, the supervised stages and MRL.

The pieces every stage shares, one concept per module:

* ``harness``     -- ``RunHarness``: run directory, lock, metrics, checkpoints, exact resume, NaN guard,
                     AMP, the optimiser step and progress; the supervised ``Trainer`` and MRL stand on it
* ``loop``        -- ``Trainer``: step function in, optimised model out (accumulation, freezing, DDP)
* ``optim``       -- AdamW over named parameter groups; freezing groups
* ``schedule``    -- warm-up + cosine learning-rate schedule with a floor
* ``checkpoint``  -- atomic checkpoints (keep last K and ``best``)
* ``data_order``  -- seeded, rank-sharded, resumable batch order
* ``distributed`` -- torchrun environment, DDP wrapping, cross-rank reductions
* ``metrics``     -- metrics.jsonl + TensorBoard from rank 0
* ``rng``         -- seeding and capturing every RNG
"""
