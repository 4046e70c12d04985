"""dcilab framework: inventory, emulated lab control, pytest plugin, faults, jobs, metrics."""
