"""Pure formulas: no I/O, no printing, floats and numpy arrays alike. Every command calls these."""
