"""Optimizers and their guards: the builder and its capability table, LARS, the gradient guard (clipping and the
non-finite check) with torch's fused-kernel protocol, the weight EMA, schedule-free switching, and the units a run
trains with."""
