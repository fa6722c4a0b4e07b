"""Provisioning steps. Each has a read-only `check` and an `apply`; the runner decides which to call."""
