"""Schema-constrained JSON generation (the `json` Truss): Outlines logits processors on a
local model, compiled guides cached per canonical schema hash, every output validated.

Modules, one job each:
- `schemas`   — schema admission (Draft 2020-12 check, size/depth limits) and canonical hash
- `cache`     — bounded, thread-safe LRU with single-flight compiles under a time budget
- `compilers` — per-backend compile (llguidance, outlines_core) → reusable compiled guide
- `engine`    — the loaded model + cache + lock; one constrained generation per request
- `api`       — request parsing (predict body, OpenAI chat body) and response shaping
- `settings`  — model_metadata → typed settings (with env overrides)
- `schema_set.json` — the varied schemas + prompts shared by tests and the bench
"""
