"""The `prograd` method: its params block (config.py) and its torch code (method.py)."""
