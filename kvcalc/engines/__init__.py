"""What differs per engine and release, as data plus small pure functions: memory rules (memory.py)."""
