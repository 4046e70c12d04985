"""Every fuzz run starts from an empty Hypothesis directory, a temporary one.

Hypothesis keeps caches there, among them the constants it finds in the project's code and mixes
into the examples it draws; a warm cache made a run here draw other examples than the same run
from a clean checkout (as CI runs it), so a failure seen in one could not be reproduced in the
other.  Starting cold makes a local run draw what CI draws, and writes nothing into the checkout.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile

from hypothesis.configuration import set_hypothesis_home_dir

_home = tempfile.mkdtemp(prefix="dcilab-hypothesis-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)
set_hypothesis_home_dir(_home)
