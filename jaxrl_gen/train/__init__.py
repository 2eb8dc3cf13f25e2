"""Training: the train state, optimizer, SFT step, checkpoints and the host loop."""
