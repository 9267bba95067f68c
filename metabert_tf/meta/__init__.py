"""Meta-learning: one engine (episodes, inner loop, outer update, strategy, checkpoints) and
one short module per algorithm."""
