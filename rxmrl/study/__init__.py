"""Studies over many runs: whether a recipe's outcome holds across seeds and perturbations.

``rxmrl study seeds`` (:mod:`rxmrl.study.commands`) plans the runs (:mod:`rxmrl.study.plan`), trains and
measures them side by side (:mod:`rxmrl.study.runner`, :mod:`rxmrl.study.worker`) and judges the distribution
(:mod:`rxmrl.study.summary`).
"""
