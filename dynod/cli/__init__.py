"""dynoctl, the command-line client of the dynod JSON API.

Commands are named as Heroku names them (``apps:create``, ``config:set``,
``ps:scale``) so that Heroku muscle memory works; :mod:`dynod.cli.main` holds the
entry point and the list of commands.
"""
