"""Models: pure nn.Modules that score frames, their registry, training and checkpoints."""
