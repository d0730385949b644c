"""The `opslib` command: one subcommand per step, plus run, status, doctor, destroy.

Owns `main` (the parser and the spec-level commands) and `steps` (the cloud-facing commands).
May import every room; nothing imports it.
"""
