"""The job queue: runs submitted from anywhere, taken by workers near the boards (procrastinate on PostgreSQL)."""
