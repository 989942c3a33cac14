"""The lifecycle of run folders: archive, restore, recover, retention, purge.

fsops moves and verifies trees; references and guards decide what may move;
reports and the journal make every move undoable after a crash.
"""
