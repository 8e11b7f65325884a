"""chub: host tools for the Communications Hub."""
