"""SFT data: expert pairs from the environments (TFDS), LLaVA-style JSON, the grain pipeline."""
