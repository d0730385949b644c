"""Where notebooks meet the library: the papermill runner, the warm kernel, the widgets.

Owns `runner` (`opslib run`: the step notebooks headless), `kernel` (a warm Jupyter kernel),
`widgets` (the cron picker) and `quickstart` (notebook 00's answers to parameters files).
May import any room but `opslib.cli`; nothing below imports it.
"""
