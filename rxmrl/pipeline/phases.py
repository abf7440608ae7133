"""The phases of ``rxmrl run``, in order, with their titles: the one list the driver runs and ``--help``
names (kept free of imports, so building the CLI parser stays cheap)."""

PHASES: tuple[str, ...] = ("data", "supervised", "mrl", "dmpo", "baseline", "eval", "retention", "audit",
                           "latency", "report")
# the phase that writes each model the later phases read (the warm start also gives every phase its tokenizer)
MODEL_PHASES = {"warm_start": "supervised", "mrl": "mrl", "dmpo": "dmpo", "baseline": "baseline"}
PHASE_TITLES = {"data": "data and tokenizer", "supervised": "supervised warm start (stages 1-4)",
                "mrl": "MRL curriculum", "dmpo": "DMPO on the same curriculum", "baseline": "stateless baseline (TRL SFT)",
                "eval": "reward-range evaluation", "retention": "retention (reference conversation in memory)",
                "audit": "reward audit", "latency": "latency per turn",
                "report": "report"}
