"""Reports over finished run directories: the typed summary schema (schema.py) and the one run
reader (runs.py), statistics (stats.py), table, leaderboard, validity check and regression check."""
