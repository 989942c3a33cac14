"""The only code that queries the registry's tables.

scenarios, configs and plans take a connection first; runs take the yard first,
because a run is also a folder on disk.
"""
