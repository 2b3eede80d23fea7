"""One board: transports (SSH, local), content-addressed push, the lease, the agent's controller side, the probe."""
