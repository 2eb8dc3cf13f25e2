"""Text and images in, model inputs out: tokenizers, the chat template, image preprocessing."""
