"""The model's inputs and their logical axes: one table the SFT batch, the RL rollout batch
and the sampler shard their arrays by (rows over the data shards). JAX-free."""

IMAGE_KEYS = ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask", "cross_attention_mask")
# What `Model.__call__` reads besides `input_ids` (positions come from the mask).
MODEL_INPUTS = ("attention_mask",) + IMAGE_KEYS

INPUT_AXES = {
    "input_ids": ("batch", "length"),
    "attention_mask": ("batch", "length"),
    "pixel_values": ("batch", None, None, None, None, None),  # [B, images, tiles, C, H, W]
    "aspect_ratio_ids": ("batch", None),
    "aspect_ratio_mask": ("batch", None, None),
    "cross_attention_mask": ("batch", "length", None, None),
}
