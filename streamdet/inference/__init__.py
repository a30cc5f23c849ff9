"""Inference: the batching policy (pure), the device-owning runner, and their stage."""
