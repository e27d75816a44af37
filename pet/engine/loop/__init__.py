"""The training loop: the trainer, one update step, the hooks around each step, and the event writers."""
