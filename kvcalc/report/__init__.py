"""What commands show: --explain's derivations and the matplotlib figures, shared by cli/ (and web/)."""
