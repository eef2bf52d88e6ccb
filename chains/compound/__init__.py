"""compound: local runtime, chain service, CLI and benchmarks around the model Trusses."""
