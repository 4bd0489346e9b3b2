"""What commands show: --explain's derivations, the figures, and the JSON and CSV documents (serialize, formats),
shared by cli/ and web/."""
