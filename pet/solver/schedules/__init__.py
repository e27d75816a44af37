"""Learning-rate schedules: pure multipliers f(k), the closed-form torch scheduler over them, momentum and
weight-decay schedules, epochs and the scaling rule turned into updates and the lr range test."""
