"""What outlives a process: checkpoints (files and FSDP folders), the output folder, pretrained weights, and the
report of what a resume changed; safe, atomic writes beneath them all."""
