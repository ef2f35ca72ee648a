"""From a validated manifest to training data: the Great Expectations suite, the split and rebalancing."""
