"""Running compiled models: ANE segments on the simulator, host segments on the CPU."""
