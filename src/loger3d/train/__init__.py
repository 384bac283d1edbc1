"""Training the model: synthetic long worlds to learn from (``worlds``) and the pieces of the training loop."""
