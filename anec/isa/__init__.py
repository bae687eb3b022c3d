"""The ANE task-descriptor instruction set as anec models it: register fields per architecture
(`fields`) and task kinds with their engine modes (`tasks`).

These tables sit below the dialects: the `anehw` dialect verifies its fields against them, the
descriptor format packs them, the simulator and the timing model read them.
"""
