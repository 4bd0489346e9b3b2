"""Every scorer of kvcalc's predictions against external data: published end-to-end runs, engine start-up logs
(memory), serving benchmarks and NVIDIA's measured kernel tables. validate/ keeps the torch measurements."""
