"""Keeping the registry safe: backup, restore-db, rebuild, check."""
