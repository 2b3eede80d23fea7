"""Deploy: one board's session as steps, the fan-out over boards, and the job that ties a run together."""
