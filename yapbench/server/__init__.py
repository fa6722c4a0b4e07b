"""The reference server: a faithful imitation of moshi-server's BatchedAsr STT module (docs/protocol.md), with
swappable recognition engines and fault injection. `yapbench serve` starts it; `launch.start_server` runs it as a
subprocess for tests and for `yapbench run`.
"""
