"""The quick trial's report as its readers get it: report.html opens in a headless Chromium
without a script error, console error or failed load, its screenshot shows the verdict table
(one row per case, each case's verdict) and the plots (every image decoded); report.pdf is a
real multi-page PDF; ``dcilab report --bundle`` packs the run with a correct MANIFEST, also for
an interrupted run.

The browser tests need Debian's chromium (``./setup.sh`` installs it, so CI has it): without
it they fail and say so rather than skip.  The bundle tests need no browser (``--no-pdf``)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from testbed.cli import main
from testbed.report.bundle import MANIFEST, make_bundle
from testbed.report.pdf import find_browser, headless, kill_group
from testbed.report.render import Rendered, render_run, write_pdf
from testbed.report.summary import ReportError, case_label

DATA = Path(__file__).parent / "data"
QUICK = DATA / "summary-quick.json"
RUN_ID = json.loads(QUICK.read_text())["run_id"]
WIDTH, HEIGHT = 1280, 2000          # the viewport; the screenshot clip is WIDTH x CLIP_H from the top
CLIP_H = 6000
PASS_RGB = (0xDF, 0xF0, 0xD8)       # .pass background in the report's CSS


def quick_run(root: Path, *, logs: bool = True) -> Path:
    """A run folder as `dcilab trial` leaves it: the quick trial's summary and snapshot, and
    (unless ``logs`` is False) small stand-ins for its raw logs."""
    d = root / RUN_ID
    d.mkdir(parents=True)
    shutil.copy(QUICK, d / "summary.json")
    shutil.copy(DATA / "testbed-quick.json", d / "testbed.json")
    if logs:
        (d / "iterations.jsonl").write_text('{"step": 0, "duration_s": 1.5}\n{"step": 1, "duration_s": 1.4}\n')
        (d / "faults.jsonl").write_text('{"kind": "FiberCut", "target": "working", "applied_step": 6}\n')
        (d / "junit.xml").write_text('<?xml version="1.0"?><testsuites><testsuite name="cases" tests="13"/></testsuites>\n')
        for job in ("q-02-test_bandwidth_drop-pp-remote-400G", "q-12-test_ason_reroute-pp-remote-8to1"):
            (d / "cases" / job / "node").mkdir(parents=True)
            (d / "cases" / job / "rank0.log").write_text(f"{job} rank 0\n")
            (d / "cases" / job / "node" / "iterations.jsonl").write_text('{"step": 0}\n')
    return d


def need_browser() -> str:
    path = find_browser()
    if path is None:
        pytest.fail("chromium not found: the report's PDF and this headless-browser test need Debian's chromium; "
                    "run ./setup.sh (it installs it, as CI does) or `apt install chromium`", pytrace=False)
    return path


# --- a minimal Chrome DevTools Protocol client --------------------------------------------------

@dataclass
class Cdp:
    """One page target over its websocket; events are kept in order for the test to inspect."""
    ws: Any
    events: list[dict[str, Any]] = field(default_factory=list)
    load_s: float = 0.0
    _next: int = 0

    def send(self, method: str, timeout_s: float = 30, **params: Any) -> dict[str, Any]:
        self._next += 1
        mid = self._next
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            msg = self._recv(deadline, method)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise AssertionError(f"CDP {method} failed: {msg['error']}")
                return msg.get("result", {})

    def wait_event(self, method: str, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        seen = len(self.events)
        while True:
            for ev in self.events[seen:]:
                if ev["method"] == method:
                    return ev
            seen = len(self.events)
            self._recv(deadline, method)

    def evaluate(self, expr: str) -> Any:
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def _recv(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no answer from chromium to {waiting_for} in time")
        self.ws.settimeout(left)
        msg = json.loads(self.ws.recv())
        if "method" in msg:
            self.events.append(msg)
        return msg


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The quick run's report, rendered once for the module, PDF included."""
    need_browser()
    return render_run(quick_run(tmp_path_factory.mktemp("quick")))


@pytest.fixture
def page(rendered: Rendered) -> Iterator[Cdp]:
    """A fresh headless Chromium at WIDTH x HEIGHT with report.html loaded; its temp profile and
    processes go when the test ends."""
    import websocket

    with headless(need_browser()) as b:
        proc = subprocess.Popen([*b.args, "--remote-debugging-port=0", f"--window-size={WIDTH},{HEIGHT}",
                                 "about:blank"], env=b.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        ws = None
        try:
            port_file = b.profile / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
                assert proc.poll() is None, f"chromium exited with status {proc.returncode} before DevTools came up"
                assert time.monotonic() < deadline, f"chromium wrote no {port_file} within 30 s"
                time.sleep(0.05)
            port = int(port_file.read_text().splitlines()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = [t for t in json.load(r) if t.get("type") == "page"]
            assert targets, "chromium has no page target"
            ws = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
            cdp = Cdp(ws)
            for domain in ("Runtime", "Log", "Network", "Page"):
                cdp.send(f"{domain}.enable")
            cdp.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                     mobile=False)
            t0 = time.perf_counter()
            cdp.send("Page.navigate", url=rendered.html.resolve().as_uri())
            cdp.wait_event("Page.loadEventFired")
            cdp.load_s = time.perf_counter() - t0
            yield cdp
        finally:
            if ws is not None:
                ws.close()
            kill_group(proc)


def _problems(events: list[dict[str, Any]]) -> list[str]:
    """Script exceptions, console and log errors and failed loads among the page's events."""
    out = []
    for ev in events:
        m, p = ev["method"], ev.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            out.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(f"log error: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif m == "Network.loadingFailed":
            out.append(f"failed load: {p.get('errorText')} {p.get('type')} (request {p.get('requestId')})")
    return out


# --- the browser ----------------------------------------------------------------------------------

VERDICT_TABLE = "[...document.querySelectorAll('h2')].find(h => h.textContent.trim() === 'Verdicts').nextElementSibling"


def test_report_opens_without_errors_and_shows_verdicts_and_plots(rendered: Rendered, page: Cdp,
                                                                 tmp_path: Path) -> None:
    summary = json.loads(QUICK.read_text())
    rows = page.evaluate(f"""(() => {{
        const t = {VERDICT_TABLE};
        return [...t.rows].slice(1).filter(r => !r.classList.contains('criteria')).map(r => ({{case: r.cells[0].textContent.trim(),
            verdict: r.cells[3].childNodes[0].textContent.trim(), cls: r.cells[3].className}}));
    }})()""")
    want = [{"case": case_label(c, i), "verdict": c["verdict"], "cls": c["verdict"]}
            for i, c in enumerate(summary["cases"])]
    assert rows == want
    caption = page.evaluate(f"{VERDICT_TABLE}.caption.textContent")
    assert caption.startswith("Transport in force: not recorded"), caption   # a summary from before the model

    imgs = page.evaluate("[...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0, "
                         "w: i.naturalWidth, alt: i.alt}))")
    plots = len(rendered.plot_files) // 2             # each figure as .png and .svg
    assert len(imgs) == plots, f"{len(imgs)} images on the page, {plots} plots rendered"
    assert all(i["ok"] for i in imgs), [i["alt"] for i in imgs if not i["ok"]]

    # the screenshot: the top of the page, WIDTH x CLIP_H CSS px at scale 1
    shot = base64.b64decode(page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                      clip={"x": 0, "y": 0, "width": WIDTH, "height": CLIP_H, "scale": 1})["data"])
    png = tmp_path / "report-top.png"
    png.write_bytes(shot)
    px = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
    assert px.shape == (CLIP_H, WIDTH, 3), f"{png}: {px.shape}"
    assert px.std() > 20, f"{png} looks blank (pixel standard deviation {px.std():.1f})"

    boxes = page.evaluate(f"""(() => {{
        const r = e => {{ const b = e.getBoundingClientRect();
            return {{x: b.left + scrollX, y: b.top + scrollY, w: b.width, h: b.height}}; }};
        const t = {VERDICT_TABLE};
        return {{table: r(t), cells: [...t.rows].filter(row => !row.classList.contains('criteria'))
                                          .map(row => [...row.cells].slice(0, 4).map(r)),
                 imgs: [...document.images].map(r)}};
    }})()""")
    # The whole table from its top to its last row, and in each row the case and its verdict.
    table = boxes["table"]
    assert _within({**table, "w": 1}), f"verdict table {table} is not in the {WIDTH}x{CLIP_H} screenshot"
    outside = [c for row in boxes["cells"] for c in row if not _within(c)]
    assert not outside, f"verdict table cells outside the {WIDTH}x{CLIP_H} screenshot: {outside[:3]}"
    inside = [b for b in boxes["imgs"] if _within(b)]
    assert inside, f"no plot inside the {WIDTH}x{CLIP_H} screenshot: {boxes['imgs'][:3]}"
    # ... and the pixels there are the table's and the plot's, not an empty area
    t = _crop(px, {**table, "w": WIDTH - table["x"]})
    assert (np.abs(t.astype(int) - PASS_RGB).sum(axis=2) < 6).sum() > 1000, "no green 'pass' cells in the verdict table"
    assert _crop(px, inside[0]).std() > 20, "the plot's area of the screenshot is blank"

    # nothing cut off at the right: the page does not scroll sideways at WIDTH px
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, f"the page is {width} px wide at a {WIDTH} px window: columns are cut off"

    problems = _problems(page.events)
    assert not problems, problems


def _within(b: dict[str, float]) -> bool:
    return b["w"] > 0 and b["h"] > 0 and b["x"] >= 0 and b["y"] >= 0 and b["x"] + b["w"] <= WIDTH \
        and b["y"] + b["h"] <= CLIP_H


def _crop(px: np.ndarray, b: dict[str, float]) -> np.ndarray:
    return px[int(b["y"]):int(b["y"] + b["h"]), int(b["x"]):int(b["x"] + b["w"])]


def test_report_pdf_is_a_multi_page_pdf(rendered: Rendered) -> None:
    assert rendered.pdf == rendered.html.with_name("report.pdf") and rendered.no_pdf is None
    data = rendered.pdf.read_bytes()
    assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF"), "truncated or not a PDF"
    pages = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))
    cases = len(json.loads(QUICK.read_text())["cases"])
    # the print CSS starts each case on a page of its own, after the run and verdict pages
    assert pages >= cases + 2, f"{pages} pages"
    boxes = {tuple(float(v) for v in m.split()) for m in re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d. ]+)\]", data)}
    a4 = [any(abs(w - a) < 2 and abs(h - b) < 2 for w, h in boxes) for a, b in ((595, 842), (842, 595))]
    assert a4 == [True, True], f"A4 portrait pages and landscape (verdict) pages expected, got {boxes}"
    assert not list(rendered.pdf.parent.glob(".report.pdf.*")), "temp file left beside report.pdf"


def test_without_a_browser_the_report_renders_and_says_why_no_pdf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    d = quick_run(tmp_path, logs=False)
    (d / "report.pdf").write_bytes(b"%PDF-1.4 of an earlier render")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["report", str(d)]) == 0
    out, err = capsys.readouterr()
    assert str(d / "report.html") in out
    assert "no PDF: chromium not found (apt install chromium" in err
    assert not (d / "report.pdf").exists(), "an outdated report.pdf must not sit beside a new report.html"
    pdf, why = write_pdf(d / "report.html")
    assert pdf is None and why is not None and why.startswith("no PDF: chromium not found")


@pytest.mark.parametrize("script, why", [
    ("echo '[1:2:ERROR:dbus/bus.cc:405] Failed to connect to the bus' >&2; echo 'cannot open display' >&2; exit 3",
     "exited with status 3 printing .*cannot open display"),
    ("sleep 30", "did not print .* within 1 s"),
    ("exit 0", "wrote no PDF"),
])
def test_a_failing_browser_costs_the_pdf_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              script: str, why: str) -> None:
    fake = tmp_path / "bin" / "chromium"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.setattr("testbed.report.pdf.TIMEOUT_S", 1.0)
    page = tmp_path / "report.html"
    page.write_text("<!DOCTYPE html><title>t</title>")
    t0 = time.monotonic()
    pdf, note = write_pdf(page)
    assert pdf is None and note is not None and re.search(why, note), note
    assert "dbus" not in note and time.monotonic() - t0 < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "report.html"], "temp PDF left behind"


# --- the bundle (no browser needed) ---------------------------------------------------------------

def _read_bundle(path: Path) -> tuple[dict[str, bytes], dict[str, Any]]:
    with tarfile.open(path, "r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert all(n.startswith(f"{RUN_ID}/") for n in files), sorted(files)
    return files, json.loads(files[f"{RUN_ID}/{MANIFEST}"])


def test_bundle_holds_report_logs_and_a_correct_manifest(tmp_path: Path) -> None:
    d = quick_run(tmp_path)
    b = make_bundle(d, pdf=False)
    assert b.path == tmp_path / f"{RUN_ID}.tar.gz" and b.rendered
    files, man = _read_bundle(b.path)
    names = {n.removeprefix(f"{RUN_ID}/") for n in files}
    plots = {p.name for p in (d / "plots").iterdir()}
    assert names == {"report.html", MANIFEST, "summary.json", "iterations.jsonl", "faults.jsonl", "testbed.json",
                     "junit.xml", *(f"plots/{p}" for p in plots),
                     *(str(p.relative_to(d)) for p in (d / "cases").rglob("*") if p.is_file())}
    assert len([n for n in names if n.startswith("cases/")]) == 4
    listed = {m["path"]: m for m in man["members"]}
    assert set(listed) == names - {MANIFEST}
    for name, m in listed.items():
        data = files[f"{RUN_ID}/{name}"]
        assert m["size"] == len(data) and m["sha256"] == hashlib.sha256(data).hexdigest(), name
    assert files[f"{RUN_ID}/summary.json"] == QUICK.read_bytes()
    assert man["run_id"] == RUN_ID and man["status"] == "completed"
    assert [m["path"] for m in man["missing"]] == ["report.pdf"] and "--no-pdf" in man["missing"][0]["why"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    # up to date: not rendered again; a newer summary.json: rendered again
    assert not make_bundle(d, tmp_path / "again.tar.gz", pdf=False).rendered
    later = (d / "report.html").stat().st_mtime + 10
    os.utime(d / "summary.json", (later, later))
    assert make_bundle(d, tmp_path / "again.tar.gz", pdf=False).rendered


def test_cli_bundle_default_path_and_interrupted_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = quick_run(tmp_path, logs=False)
    s = json.loads(QUICK.read_text())
    s.update(status="interrupted", ended=None)
    (d / "summary.json").write_text(json.dumps(s))
    (d / "faults.jsonl").write_text("{}\n")
    assert main(["report", str(d), "--bundle", "--no-pdf"]) == 0
    out = capsys.readouterr().out
    dest = tmp_path / f"{RUN_ID}.tar.gz"
    assert str(dest) in out and "missing (recorded in MANIFEST.json): iterations.jsonl" in out
    files, man = _read_bundle(dest)
    missing = {m["path"]: m["why"] for m in man["missing"]}
    assert set(missing) == {"iterations.jsonl", "junit.xml", "cases/", "report.pdf"}
    assert "interrupted" in missing["iterations.jsonl"]
    assert man["status"] == "interrupted" and f"{RUN_ID}/faults.jsonl" in files and f"{RUN_ID}/report.html" in files

    # a folder as PATH: <run-id>.tar.gz in it
    (tmp_path / "mail").mkdir()
    assert main(["report", str(d), "--bundle", str(tmp_path / "mail"), "--no-pdf"]) == 0
    assert (tmp_path / "mail" / f"{RUN_ID}.tar.gz").is_file()
    assert "report up to date" in capsys.readouterr().out


def test_cli_bundle_errors_name_the_path_and_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope"), "--bundle", "--no-pdf"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nope'}: no such run folder" in err and "reports/<run-id>" in err
    d = quick_run(tmp_path, logs=False)
    (tmp_path / "a-file").write_text("")
    assert main(["report", str(d), "--bundle", str(tmp_path / "a-file" / "x.tar.gz"), "--no-pdf"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a-file' / 'x.tar.gz'}: cannot write the bundle there" in err and "--bundle PATH" in err
    with pytest.raises(ReportError, match="no such file"):
        make_bundle(tmp_path, pdf=False)        # a folder without summary.json
