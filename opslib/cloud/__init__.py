"""Where a spec runs: the official clients for Google Cloud or localcloud, and the session.

Owns the client factory (`clients`) and the session a notebook opens (`session`: the spec,
its project root, its service folder, its target, localcloud started on demand).
May import `opslib.core`, `opslib.spec` and `opslib.localcloud` (to start it), nothing above.
"""
