"""opslib: "run this automatically" as five steps on Google Cloud (or localcloud), one room each.

The rooms, lowest first; each imports only rooms before it (tests/test_layout.py):
`core` (errors, plan rows, tables) · `spec` (the parameters file, Google's rules, cron) ·
`localcloud` (the emulator) · `cloud` (clients, session) · `steps` (scaffold, endpoint,
deploy, schedule, verify, secrets, logs) · `doctor` · `fleet` (many jobs, status, destroy) ·
`notebook` (runner, widgets) · `cli`. The map and the flow: docs/architecture.md.
"""
