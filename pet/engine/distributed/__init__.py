"""Processes working together: the torch.distributed process group, FSDP sharding, and stop signals agreed
between processes."""
