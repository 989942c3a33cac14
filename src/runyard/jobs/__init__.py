"""Jobs: the queue, workers, runners and what jobs do."""
