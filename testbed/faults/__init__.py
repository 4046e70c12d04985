"""The fault catalogue (see :mod:`testbed.faults.catalogue`): typed, reversible, journaled faults
that touch only what the inventory allows (``fault_injection: true``)."""

from .catalogue import (BandwidthDrop, BitErrors, ConvergenceRatio, Fault, FaultRecord, FiberCut, ProtectionSwitch, Stamp, Testbed,
                        check_allowed, fault_from_args, physical_ratio)
from .journal import Entry, Journal, Step, journal_dir
from .ops import FaultError, FaultNotInEffect, FaultRefused, UndoFailed
from .restore import RestoreReport, check_baseline, restore
from .signals import Interrupted, deferred_interrupts, interrupts_as_exceptions

__all__ = ["BandwidthDrop", "BitErrors", "ConvergenceRatio", "Entry", "Fault", "FaultError", "FaultNotInEffect", "FaultRecord",
           "FaultRefused", "FiberCut", "Interrupted", "Journal", "ProtectionSwitch", "RestoreReport", "Stamp", "Step",
           "Testbed", "UndoFailed", "check_allowed", "check_baseline", "physical_ratio", "deferred_interrupts", "fault_from_args",
           "interrupts_as_exceptions", "journal_dir", "restore"]
