"""Deploy moshi-server / yap-server STT on GPU hosts over SSH (Fabric): probe -> plan -> apply, per host.

Every step has a read-only check and an apply, so a second `up` changes nothing. Remote calls go through
`provision.executor.Executor`, which keeps the planning logic testable without SSH.
"""
