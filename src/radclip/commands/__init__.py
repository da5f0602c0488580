"""One module per ``radclip`` sub-command.

Each module defines ``HELP: str``, ``add_arguments(parser)`` (cheap: no heavy imports) and
``run(args) -> int`` (imports what it needs, returns the exit code). ``radclip.cli`` finds
them through its ``COMMANDS`` table.
"""
