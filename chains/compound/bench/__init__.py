"""`compound bench SUITE`: each suite compares ours vs a named reference in one run.

A suite is a module `compound.bench.<suite>` with `run(out_dir: Path) -> dict`; it uses
`compound.bench.report` to write `results.json`, PNG plots and print a table.
"""
SUITES = ("llm", "whisper", "json", "tts", "chain")
