"""The fault catalogue (see :mod:`testbed.faults.catalogue`): typed, reversible, journaled faults
that touch only what the inventory allows (``fault_injection: true``), one module per kind
(:mod:`testbed.faults.kinds`, registered in :mod:`testbed.faults.registry`)."""

from .catalogue import BaselineView, Fault, FaultRecord, Stamp, Testbed, check_allowed
from .journal import Entry, Journal, Step, journal_dir
from .kinds.bandwidth_drop import BandwidthDrop
from .kinds.bit_errors import BitErrors
from .kinds.convergence_ratio import ConvergenceRatio, physical_ratio
from .kinds.fiber_cut import FiberCut
from .kinds.protection_switch import ProtectionSwitch
from .ops import FaultError, FaultNotInEffect, FaultRefused, UndoFailed
from .registry import fault_from_args, register
from .restore import RestoreReport, check_baseline, restore
from .signals import Interrupted, deferred_interrupts, interrupts_as_exceptions

__all__ = ["BandwidthDrop", "BaselineView", "BitErrors", "ConvergenceRatio", "Entry", "Fault", "FaultError",
           "FaultNotInEffect", "FaultRecord", "FaultRefused", "FiberCut", "Interrupted", "Journal", "ProtectionSwitch",
           "RestoreReport", "Stamp", "Step", "Testbed", "UndoFailed", "check_allowed", "check_baseline",
           "physical_ratio", "deferred_interrupts", "fault_from_args", "interrupts_as_exceptions", "journal_dir",
           "register", "restore"]
