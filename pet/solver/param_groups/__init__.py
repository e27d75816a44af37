"""Parameter groups: the rules that give each parameter its lr and weight decay (a function of name, module and
parameter), layer-wise lr decay, the merge into as few groups as possible, and the report of the groups."""
