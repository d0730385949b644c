"""The vocabulary every room shares: errors, plan rows, atomic writes, progress, tables.

Owns `errors` (BadInput/OpslibError: file, field, rule, fix), `plan` (the rows a step shows
before it acts), `fsutil` (atomic writes), `progress` and `display` (tables and banners).
May import nothing from opslib: every other room imports it.
"""
