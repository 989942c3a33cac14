"""Built-in example runners that show what a plan run looks like end to end."""
