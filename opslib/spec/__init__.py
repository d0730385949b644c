"""What the user asks for: the parameters file, validated against Google's rules.

Owns the spec model, its loader, Google's limits (`rules`), cron and its words, the project
layout (`project`), the parameters-file write-back and the one-paragraph summary.
May import `opslib.core` only: no clients, no steps. localcloud never imports it: it checks
requests with its own rules, so that it can catch a wrong rule here.
"""
