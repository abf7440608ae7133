"""Gymnasium multi-turn memory environments built from the MRL curriculum (installed as ``rxmrl.envs``)."""
