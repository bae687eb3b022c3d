"""The `.anec` descriptor format: per-architecture field tables, the program model, encode, decode
and validation. Shared by the emitter (writes), the simulator and the timing model (read)."""
