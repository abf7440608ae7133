"""Training: the shared loop, the supervised stages and MRL."""
