"""dynod's state: one SQLite database in WAL mode under the state dir."""
