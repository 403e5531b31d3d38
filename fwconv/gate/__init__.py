"""CI parity gates: many models x targets from one config, converted and validated, with goldens,
latency baselines, a content-hash cache, and parallel (process or Ray) execution."""
