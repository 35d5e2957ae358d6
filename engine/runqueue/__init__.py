"""The run queue: runs waiting in an output folder's queue.json (store.py) and the process that
trains them one after another, outliving the terminal (runner.py)."""
