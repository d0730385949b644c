"""Many automations at once: open the parameters files together and run the steps over them.

Owns `load` (open_fleet: the rules between specs, one service spec per folder), `steps` (steps
1-5 over a fleet, one build per service), `status/` (the reads, the run columns, the drift,
one row, the views) and `destroy`.
May import every room below it (core, spec, cloud, steps, doctor); never `opslib.notebook`.
"""
