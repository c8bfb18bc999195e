"""The ``dynod`` command: the daemon and its maintenance subcommands."""
