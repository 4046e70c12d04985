"""The emulated gear: the other side of the wire.

Nothing in here imports drivers/ or testbed/: emulator code must only know protocols and
Linux, exactly as a real device knows nothing of the framework testing it.
"""
