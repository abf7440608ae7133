"""Memory-retention rewards (installed as ``rxmrl.rewards``)."""
