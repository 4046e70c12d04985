"""``report.html`` -> ``report.pdf`` for mailing, printed by a headless Chromium (Debian's
``chromium`` package; ``./setup.sh`` installs it).

The page is self-contained, so the browser needs no network: it runs with a throwaway profile,
HOME and XDG folders under a temporary directory (nothing is left in the user's home), its
background networking off and every host name unresolvable.  A missing browser is not an error
for the report: the caller says "no PDF" and why."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "apt install chromium, or run ./setup.sh"
TIMEOUT_S = 120.0   # a nightly report (hundreds of figures) prints in seconds; a hang must not block a run


class PdfError(Exception):
    """The browser ran but no PDF came out; the message says what the browser said."""


@dataclass
class Browser:
    """A started-from-scratch browser environment: the binary, its flags and its environment."""
    path: str
    args: list[str]
    env: dict[str, str]
    profile: Path       # --user-data-dir: where the browser writes DevToolsActivePort


def find_browser() -> str | None:
    """The first Chromium-family binary on PATH, or None."""
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    return None


def not_found_reason() -> str:
    return f"chromium not found ({INSTALL_HINT})"


@contextmanager
def headless(binary: str | None = None) -> Iterator[Browser]:
    """Flags and environment for one headless run, inside a temporary home removed afterwards.

    ``--no-sandbox``: the lab controller and CI run as root, where Chromium's sandbox refuses to
    start.  ``--disable-dev-shm-usage``: containers have a small /dev/shm (Debian's wrapper
    script means to add it but its size test fails on some hosts)."""
    path = binary or find_browser()
    if path is None:
        raise PdfError(not_found_reason())
    with tempfile.TemporaryDirectory(prefix="dcilab-chromium-") as tmp:
        home = Path(tmp)
        env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
               "XDG_CACHE_HOME": str(home / "cache"), "XDG_DATA_HOME": str(home / "data"), "TMPDIR": str(home)}
        env.pop("DISPLAY", None)      # the wrapper would show its messages in an X window
        args = [path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={home / 'profile'}", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-breakpad", "--disable-crash-reporter", "--metrics-recording-only",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost", "--hide-scrollbars",
                "--mute-audio"]
        yield Browser(path, args, env, home / "profile")


def _tail(text: str, lines: int = 3) -> str:
    """The browser's last words, less the D-Bus noise it prints on a machine without a session bus."""
    keep = [ln.strip() for ln in text.splitlines() if ln.strip() and "dbus" not in ln.lower()
            and "unexpected operator" not in ln]
    return " | ".join(keep[-lines:]) or "no output"


def print_pdf(html: Path, pdf: Path, *, binary: str | None = None, timeout_s: float | None = None) -> float:
    """Print ``html`` to ``pdf`` (atomically: a temp file beside it, then a rename); seconds taken.

    Raises PdfError when there is no browser, it fails, times out (default TIMEOUT_S) or writes
    no PDF."""
    timeout_s = timeout_s or TIMEOUT_S
    html, pdf = Path(html).resolve(), Path(pdf)
    tmp = pdf.with_name(f".{pdf.name}.{os.getpid()}.tmp")
    t0 = time.perf_counter()
    try:
        with headless(binary) as b:
            cmd = [*b.args, "--no-pdf-header-footer", f"--print-to-pdf={tmp.resolve()}", html.as_uri()]
            try:
                proc = subprocess.Popen(cmd, env=b.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, errors="replace",
                                        start_new_session=True)
            except OSError as exc:
                raise PdfError(f"{b.path}: cannot start the browser: {exc} ({INSTALL_HINT})") from None
            try:
                out, _ = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise PdfError(f"{b.path} did not print {html} within {timeout_s:.0f} s") from None
            finally:
                kill_group(proc)    # renderer and zygote processes outlive a finished browser now and then
            if proc.returncode != 0:
                raise PdfError(f"{b.path} exited with status {proc.returncode} printing {html}: {_tail(out)}")
            if not tmp.exists() or tmp.read_bytes()[:5] != b"%PDF-":
                raise PdfError(f"{b.path} wrote no PDF for {html}: {_tail(out)}")
        os.replace(tmp, pdf)
    except OSError as exc:     # the temp home, the temp PDF or the rename
        raise PdfError(f"{pdf}: cannot write the PDF: {exc} (choose another --out)") from None
    finally:
        tmp.unlink(missing_ok=True)
    return time.perf_counter() - t0


def kill_group(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """End a browser started with ``start_new_session=True`` and all its helper processes."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
