"""The built-in fault kinds, one module each; importing this package registers them."""

from . import bandwidth_drop, bit_errors, convergence_ratio, fiber_cut, protection_switch

__all__ = ["bandwidth_drop", "bit_errors", "convergence_ratio", "fiber_cut", "protection_switch"]
