"""Model profiles for the simulator: one YAML file per model, citing its config."""
