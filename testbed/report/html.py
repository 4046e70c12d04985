"""``report.html``: one self-contained page (plots as base64 PNG, inline CSS, no URLs) that
someone who was not in the lab can read offline: what ran against which gear, what passed,
and the trial's pictures.  All text from the summary is escaped."""

from __future__ import annotations

import base64
import datetime as dt
import json
from html import escape
from typing import Any

from testbed.report import fidelity
from testbed.report.compare import DISRUPTION_MIN_REPEATS, groups
from testbed.report.plots import Plot
from testbed.report.summary import KNOWN_SCHEMAS, case_label, cases, dct, lst, num

CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}
.pass{background:#dff0d8}.fail{background:#f2dede}.error{background:#f0c0c0}
.planned,.observed,.skip{background:#f5f5f5}
.banner{border:2px solid #c00;background:#fee;padding:.5em 1em;margin:1em 0}
.note{color:#555;font-size:.85em}
caption.transport{text-align:left;color:#333;padding:.3em 0}
img{max-width:100%}
figure{margin:1em 0}
/* report.pdf: A4, the wide verdict table on landscape pages, one case per page with its figures */
@media print{
@page{size:A4;margin:12mm 10mm}
@page wide{size:A4 landscape;margin:10mm}
body{margin:0;max-width:none;font-size:9pt;-webkit-print-color-adjust:exact;print-color-adjust:exact}
table{font-size:7.5pt}
th,td{overflow-wrap:break-word;padding:.15em .3em}
tr,figure{break-inside:avoid}
h1,h2,h3{break-after:avoid}
h2:has(+table table),table:has(table){page:wide}
h3[id^=case-],h2:has(+h3[id^=case-]){break-before:page}
h2+h3[id^=case-]{break-before:auto}
a{color:inherit;text-decoration:none}
figure{margin:.5em 0}
img{max-height:120mm}
}
"""


def e(x: Any) -> str:
    """Escaped text of any summary value (None as a dash)."""
    if x is None:
        return "&ndash;"
    if isinstance(x, float):
        return escape(f"{x:.4g}")
    if isinstance(x, (dict, list)):
        return escape(json.dumps(x, separators=(", ", ": "), default=str))
    return escape(str(x))


def _duration(start: Any, end: Any) -> str | None:
    try:
        a = dt.datetime.fromisoformat(str(start))
        b = dt.datetime.fromisoformat(str(end))
    except ValueError:
        return None
    s = int((b - a).total_seconds())
    return f"{s // 3600}h {s % 3600 // 60:02d}m {s % 60:02d}s"


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in pairs)


def _testbed(summary: dict[str, Any], snapshot: dict[str, Any] | None, snapshot_error: str | None) -> str:
    tb = dct(summary.get("testbed"))
    em = tb.get("emulated")
    out = ["<h2>Testbed</h2><table>", _rows([
        ("name", e(tb.get("name"))),
        ("emulated", "yes (emulated lab)" if em is True else "no (real gear)" if em is False else "unknown"),
        ("transport", transport_text(summary)),
        ("inventory", e(tb.get("source"))),
        ("controller", e(summary.get("controller"))),
    ]), "</table>"]
    devices = dct(snapshot.get("devices")) if snapshot else {}
    if not devices:
        why = snapshot_error or "testbed.json has no devices"
        out.append(f"<p class='note'>Device versions: missing ({e(why)}).</p>")
        return "".join(out)
    out.append("<h3>Device versions (testbed.json)</h3><table><tr><th>device</th><th>vendor / model</th>"
               "<th>software</th><th>other</th></tr>")
    for name, d in devices.items():
        d = dct(d)
        if d.get("error"):
            out.append(f"<tr><td>{e(name)}</td><td colspan=3 class='fail'>{e(d.get('error'))}</td></tr>")
            continue
        vendor = " ".join(str(d[k]) for k in ("vendor", "model") if d.get(k)) or None
        soft = d.get("software_version") or "; ".join(
            f"{k} {d[k]}" for k in ("os", "kernel", "python", "torch", "cuda", "backend") if d.get(k)) or None
        other = {k: v for k, v in d.items() if k in ("serial", "gpus", "nccl") and v}
        out.append(f"<tr><td>{e(name)}</td><td>{e(vendor)}</td><td>{e(soft)}</td><td>{e(other or None)}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _run(summary: dict[str, Any], all_cases: list[dict[str, Any]]) -> str:
    prof = summary.get("profile")
    pname = dct(prof).get("name") if isinstance(prof, dict) else prof
    dci = dct(summary.get("dcilab"))
    rev = dci.get("git_revision")
    rev_txt = f"{rev}{' (dirty tree)' if dci.get('git_dirty') else ''}" if rev else dci.get("error")
    status = summary.get("status")
    ended = summary.get("ended")
    pairs = [("run id", e(summary.get("run_id"))), ("profile", e(pname)),
             ("started", e(summary.get("started"))),
             ("ended", e(ended) + (f" (duration {escape(d)})" if (d := _duration(summary.get("started"), ended))
                                   else "")),
             ("status", f"<b>{e(status)}</b>" + (f", exit status {e(summary.get('exit_status'))}"
                                                  if "exit_status" in summary else "")),
             ("verdicts", e(summary.get("verdicts") or _counts(all_cases))),
             ("dcilab", f"{e(dci.get('version'))}, git {e(rev_txt)}")]
    out = ["<h2>Run</h2><table>", _rows(pairs), "</table>"]
    schema = summary.get("schema")
    if schema not in KNOWN_SCHEMAS:
        out.append(f"<p class='banner'>summary.json schema {e(schema)} is not one this renderer knows "
                   f"({e(list(KNOWN_SCHEMAS))}); showing what it could read.</p>")
    if status != "completed":
        done = [c for c in all_cases if c.get("verdict") in ("pass", "fail")]
        items = "".join(f"<li>{e(case_label(c, i))}: {e(c.get('verdict'))}</li>" for i, c in enumerate(done))
        out.append(f"<div class='banner'><b>This run did not complete (status: {e(status)}).</b> "
                   f"{len(done)} of {len(all_cases)} recorded cases completed"
                   f"{':<ul>' + items + '</ul>' if items else '; none completed.'}</div>")
    errs = [dct(x) for x in lst(summary.get("errors"))]
    if errs:
        out.append("<h3>Run errors</h3><ul>" + "".join(f"<li>{e(x.get('at'))}: {e(x.get('error'))}</li>"
                                                       for x in errs) + "</ul>")
    return "".join(out)


def _counts(all_cases: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in all_cases:
        out[str(c.get("verdict"))] = out.get(str(c.get("verdict")), 0) + 1
    return out


def _threshold(c: dict[str, Any]) -> str:
    op = c.get("op")
    if op == "observe":
        return "observed only"
    return f"{e(op)} {e(c.get('value'))}" if op is not None else "&ndash;"


def _criteria(case: dict[str, Any]) -> str:
    crits = [dct(c) for c in lst(case.get("criteria"))]
    if not crits:
        return "<span class='note'>no criteria recorded</span>"
    rows = [("<table><tr><th>criterion</th><th>metric</th><th>measured</th><th>trial reference</th>"
            "<th>threshold</th><th>status</th><th>deviation</th><th>emulation note</th></tr>")]
    for c in crits:
        ref = e(c.get("reference"))
        if c.get("reference_text"):
            ref += f"<br><span class='note'>{e(c.get('reference_text'))}</span>"
        st = str(c.get("status"))
        rows.append(f"<tr><td>{e(c.get('id'))}</td><td>{e(c.get('metric'))}</td><td>{e(c.get('measured'))}</td>"
                    f"<td>{ref}</td><td>{_threshold(c)}</td><td class='{escape(st)}'>{e(st)}</td>"
                    f"<td>{e(c.get('deviation'))}</td><td class='note'>{e(c.get('emulation'))}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def transport_text(summary: dict[str, Any]) -> str:
    """Which transport the numbers come from (summary.testbed.transport); an older summary, written
    before the transport model existed, ran plain TCP on the emulated lab."""
    tb = dct(summary.get("testbed"))
    t = dct(tb.get("transport"))
    if t.get("text"):
        return f"<b>{e(t.get('model'))}</b>: {e(t.get('text'))}"
    if tb.get("emulated") is True:
        return "not recorded (a run before the transport model: plain TCP over the emulated line)"
    return "not recorded"


def _fidelity(summary: dict[str, Any]) -> str:
    """On an emulated run: each of the trial's effects as the lab showed it (testbed/report/fidelity.py)."""
    if dct(summary.get("testbed")).get("emulated") is not True:
        return ""
    out = ["<h2>Fidelity to the field trial</h2>",
           f"<p class='note'>What the emulated lab showed of each effect the trial reported, and the target it "
           f"is held to. Transport: {transport_text(summary)}</p>",
           "<table><tr><th>effect</th><th>emulated</th><th>trial</th><th>target</th><th>met</th></tr>"]
    for r in fidelity.rows(summary):
        met = {True: ("pass", "yes"), False: ("fail", "no"), None: ("note", "not run")}[r["met"]]
        emu = "<br>".join(f"{e(k)}: {e(v)}" for k, v in r["cases"].items()) or "not run"
        out.append(f"<tr><td>{e(r['effect'])}</td><td>{emu}</td><td>{e(r['trial'])}</td><td>{e(r['target'])}</td>"
                   f"<td class='{met[0]}'>{met[1]}</td></tr>")
    out.append("</table>")
    out.append(_predicted(summary))
    return "".join(out)


def _predicted(summary: dict[str, Any]) -> str:
    """The measured bit-error and outage cases beside what ``dcilab predict``'s model says from the
    same run's baseline (testbed/predict.py)."""
    t = dct(dct(summary.get("testbed")).get("transport"))
    if not t.get("modelled") or not t.get("line_rate_gbps") or not t.get("path_km"):
        return ""
    from emulator.line import roce
    from testbed.predict import Line, predicted_vs_measured
    try:
        tc = roce.TransportConfig.from_dict({k: v for k, v in t.items() if k in roce.TransportConfig.FIELDS})
    except ValueError as exc:
        return f"<p class='note'>Predicted vs measured: the recorded transport cannot be read ({e(exc)}).</p>"
    rows = predicted_vs_measured(summary, Line(float(t["line_rate_gbps"]), float(t["path_km"]), tc))
    if not rows:
        return ("<p class='note'>Predicted vs measured: no bit-error or outage case with a baseline that "
                "recorded its WAN bytes.</p>")

    def fig(v: Any, outcome: Any) -> str:
        return e(round(v, 3)) if outcome == "completed" and isinstance(v, float) else e(outcome)
    out = ["<h3>Predicted vs measured</h3><p class='note'>What <code>dcilab predict</code> says for each case "
           "from this run's baseline (iteration time, WAN bytes per iteration) and the transport model; the "
           "outage is the probe's measured disruption.</p><table><tr><th>case</th><th>metric</th>"
           "<th>measured</th><th>predicted</th><th>model</th></tr>"]
    for r in rows:
        out.append(f"<tr><td>{e(r['case'])}</td><td>{e(r['metric'])}</td>"
                   f"<td>{fig(r['measured'], r['measured_outcome'])}</td>"
                   f"<td>{fig(r['predicted'], r['predicted_outcome'])}</td><td class='note'>{e(r['detail'])}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _verdicts(all_cases: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    if not all_cases:
        return "<h2>Verdicts</h2><p>No case was recorded.</p>"
    rows = [("<h2>Verdicts</h2><table class='verdicts'>"
             f"<caption class='transport'>Transport in force: {transport_text(summary)}</caption>"
             "<tr><th>case</th><th>scenario</th><th>params</th><th>verdict</th></tr>")]
    for i, c in enumerate(all_cases):
        v = str(c.get("verdict"))
        notes = [str(p) for p in lst(c.get("problems"))] + ([str(c["error"])] if c.get("error") else [])
        if c.get("degraded"):
            notes.append(f"degraded (canary): injected {json.dumps(c['degraded'])}")
        extra = "".join(f"<br><span class='note'>{e(n)}</span>" for n in notes)
        rows.append(f"<tr><td><a href='#case-{i}'>{e(case_label(c, i))}</a></td><td>{e(c.get('scenario'))}</td>"
                    f"<td>{e(c.get('params'))}</td><td class='{escape(v)}'>{e(v)}{extra}</td></tr>"
                    # the criteria on a row of their own: beside the case they made the table wider
                    # than a screen (measured vs trial vs threshold, with the trial's words)
                    f"<tr class='criteria'><td colspan='4'>{_criteria(c)}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _paired(c: dict[str, Any]) -> str:
    """A case on a shared job: the windows of the same job it was judged against."""
    pr = dct(c.get("paired"))
    if not pr:
        return ""

    def steps(xs: Any) -> str:
        xs = [x for x in lst(xs) if isinstance(x, int)]
        return "none" if not xs else (f"{xs[0]}-{xs[-1]}" if xs == list(range(xs[0], xs[-1] + 1)) else
                                      ", ".join(map(str, xs)))
    m = dct(c.get("metrics"))
    rows = [("job", e(c.get("job_id"))),
            ("window before: iterations", f"{steps(pr.get('before_steps'))}, median {e(num(pr.get('before_s')))} s"),
            ("window after: iterations", f"{steps(pr.get('after_steps'))}, median {e(num(pr.get('after_s')))} s"
             + ("" if pr.get("settled", True) else " (the undo's hit had not settled)")),
            ("set aside (the network changed, or settling)", steps(pr.get("set_aside_steps")))]
    for side in ("before", "after"):
        if m.get(f"equivalent_compute_{side}") is not None:
            rows.append((f"equivalent compute against the window {side}", e(num(m[f"equivalent_compute_{side}"]))))
    return ("<p class='note'>Judged against the unimpaired windows of the same job, right before and after "
            "the case (A/B/A).</p><table class='paired'>" + _rows(rows) + "</table>")


def _single_site(c: dict[str, Any]) -> str:
    """The trial's own comparison: the same layout with every rank in one site, beside the paired one."""
    m = dct(c.get("metrics"))
    if "single_site_s" not in m:
        return ""
    rows = [("single-site job: median iteration", f"{e(num(m.get('single_site_s')))} s")]
    if m.get("equivalent_compute_single_site") is not None:
        what = "the window under the setting" if c.get("scenario") == "convergence" else "the window before the fault"
        rows.append((f"equivalent compute against it ({what})", e(num(m["equivalent_compute_single_site"]))))
    if m.get("equivalent_compute") is not None:
        rows.append(("equivalent compute, paired (the verdict's)", e(num(m["equivalent_compute"]))))
    return ("<p class='note'>Against the run's single-site job (placement local, measured before the first "
            "case), as the trial compared; verdicts use the paired windows, measured in the same job.</p>"
            "<table class='paired'>" + _rows(rows) + "</table>")


def _img(p: Plot) -> str:
    data = base64.b64encode(p.png).decode()
    return (f"<figure><img alt='{escape(p.caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption class='note'>{escape(p.caption)} (also plots/{escape(p.name)}.png, .svg)</figcaption></figure>")


def _case_section(i: int, c: dict[str, Any], plots: list[Plot]) -> str:
    m = dct(c.get("metrics"))
    keys = [k for k in ("baseline_s", "pre_fault_s", "median_s", "equivalent_compute", "worst_efficiency",
                        "mean_efficiency", "affected_iterations", "recovery_s", "disruption_ms", "fault_step")
            if k in m]
    out = [(f"<h3 id='case-{i}'>{e(case_label(c, i))} <span class='{escape(str(c.get('verdict')))}'>"
           f"{e(c.get('verdict'))}</span></h3>"),
           f"<p class='note'>status {e(c.get('status'))}; outcome {e(dct(c.get('outcome')).get('detail'))}</p>"]
    if keys:
        out.append("<table><tr>" + "".join(f"<th>{escape(k)}</th>" for k in keys) + "</tr><tr>"
                   + "".join(f"<td>{e(m[k])}</td>" for k in keys) + "</tr></table>")
    out.append(_paired(c))
    out.append(_single_site(c))
    ws = [dct(w) for w in lst(c.get("conditions")) + lst(c.get("faults"))]
    if ws:
        out.append("<table><tr><th>role</th><th>kind</th><th>target</th><th>applied step</th>"
                   "<th>undone step</th><th>error</th></tr>")
        for w in ws:
            out.append(f"<tr><td>{e(w.get('role'))}</td><td>{e(w.get('kind'))}</td><td>{e(w.get('target'))}</td>"
                       f"<td>{e(w.get('applied_step'))}</td><td>{e(w.get('undone_step'))}</td>"
                       f"<td>{e(w.get('error'))}</td></tr>")
        out.append("</table>")
    probe = dct(c.get("probe"))
    if probe:
        dis = dct(probe.get("disruptions"))
        out.append("<table>" + _rows([("probe received / expected", f"{e(probe.get('received'))} / {e(probe.get('expected'))}"),
                                      ("lost", e(probe.get("lost"))),
                                      ("service disruption (loss-based) ms", e(num(probe.get("sdt_loss_ms")))),
                                      ("largest gap ms", e(num(probe.get("sdt_gap_ms")))),
                                      ("disruptions over threshold", (f"{e(dis.get('count'))} "
                                       f"(threshold {e(dis.get('threshold_ms'))} ms, longest {e(dis.get('longest_ms'))} ms)"))])
                   + "</table>")
    out.extend(_img(p) for p in plots)
    if not plots:
        out.append("<p class='note'>No iterations recorded for this case.</p>")
    return "".join(out)


def _stat(s: dict[str, Any] | None, pct: bool = False) -> str:
    """``mean ± std [min, max] (n)`` of one metric across repeats."""
    s = dct(s)
    if not s.get("n"):
        return "&ndash;"
    f = (lambda x: f"{x:.1%}") if pct else (lambda x: f"{x:.4g}")
    if s["n"] == 1:
        return escape(f(s["mean"]))
    std = f" &plusmn; {escape(f(s['std']))}" if s.get("std") is not None else ""
    return f"{escape(f(s['mean']))}{std} <span class='note'>[{escape(f(s['min']))}, {escape(f(s['max']))}] n={s['n']}</span>"


def _repeats(summary: dict[str, Any]) -> str:
    """Mean and spread per case across the run's repeats (the nightly profile); empty otherwise."""
    gs = groups(summary)
    if not any(len(g.repeats) > 1 for g in gs.values()):
        return ""
    rows = [("<h2>Across repeats</h2><p class='note'>Each case's metrics over its repeats: mean &plusmn; "
             "standard deviation [min, max], as the trial averaged several runs.</p><table><tr><th>case</th>"
             "<th>repeats</th><th>verdicts</th><th>outcomes</th><th>equivalent compute</th><th>mean efficiency</th>"
             "<th>worst efficiency</th><th>affected iterations</th><th>disruption ms</th></tr>")]
    for g in gs.values():
        m = g.metrics
        rows.append(f"<tr><td>{e(g.key)}</td><td>{len(g.repeats)}</td><td>{e(g.verdicts)}</td><td>{e(g.outcomes)}</td>"
                    f"<td>{_stat(m.get('equivalent_compute'))}</td><td>{_stat(m.get('mean_efficiency'))}</td>"
                    f"<td>{_stat(m.get('worst_efficiency'))}</td><td>{_stat(m.get('affected_iterations'))}</td>"
                    f"<td>{_stat(m.get('disruption_ms'))}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _comparison(comparison: dict[str, Any] | None, comparison_error: str | None) -> str:
    """What changed since the previous run and against the pinned reference."""
    if comparison is None:
        return (f"<h2>Compared with earlier runs</h2><p class='note'>{e(comparison_error)}</p>"
                if comparison_error else "")
    comps = [dct(c) for c in lst(comparison.get("comparisons"))]
    if not comps:
        return ("<h2>Compared with earlier runs</h2><p>No earlier run of this profile and no pinned reference: "
                "nothing to compare with yet.</p>")
    out = ["<h2>Compared with earlier runs</h2>"]
    for c in comps:
        regs, cfg = lst(c.get("regressions")), dct(c.get("settings"))
        head = (f"<b class='fail'>{len(regs)} regression{'s' if len(regs) != 1 else ''}</b>: {e(', '.join(map(str, regs)))}"
                if regs else "<b>no regression</b>")
        imps = lst(c.get("improvements"))
        out.append(f"<h3>{e(c.get('role'))} run {e(c.get('run_id'))} <span class='note'>(profile "
                   f"{e(c.get('profile'))}, started {e(c.get('started'))})</span></h3><p>{head}"
                   f"{f'; {len(imps)} improvement(s)' if imps else ''}. <span class='note'>A regression: median "
                   f"per-iteration efficiency lower, Welch's one-sided t-test on log efficiency, p (Holm) &lt; {e(cfg.get('alpha'))}, a fall "
                   f"beyond {e(cfg.get('min_change'))} and beyond {e(cfg.get('spread_k'))} x the spread between "
                   f"repeats; or, with {DISRUPTION_MIN_REPEATS} repeats on both sides, the probe's service disruption higher by the same "
                   f"rules (and by more than two probe frame intervals).</span></p>")
        out.append("<table><tr><th>case</th><th>status</th><th>median efficiency (this / that)</th><th>change</th>"
                   "<th>p (Holm)</th><th>equivalent compute (this / that)</th>"
                   "<th>service disruption, median ms (this / that)</th><th>verdicts (this / that)</th>"
                   "<th>why</th></tr>")
        for ch in (dct(x) for x in lst(c.get("cases"))):
            st = str(ch.get("status"))
            cls = {"regression": "fail", "improvement": "pass"}.get(st, "observed")
            med, eq, ver = lst(ch.get("median")), lst(dct(ch.get("metrics")).get("equivalent_compute")), lst(ch.get("verdicts"))
            change = num(ch.get("change"))
            sdt = lst(dct(ch.get("disruption")).get("median"))
            out.append(f"<tr><td>{e(ch.get('key'))}</td><td class='{cls}'>{e(st)}</td>"
                       f"<td>{' / '.join(e(num(x)) for x in med) or '&ndash;'}</td>"
                       f"<td>{escape(f'{change:+.1%}') if change is not None else '&ndash;'}</td>"
                       f"<td>{e(num(ch.get('p_adjusted')))}</td><td>{' / '.join(e(num(x)) for x in eq) or '&ndash;'}</td>"
                       f"<td>{' / '.join(e(num(x)) for x in sdt) or '&ndash;'}</td>"
                       f"<td>{' / '.join(e(x) for x in ver)}</td><td class='note'>{e(ch.get('reason'))}</td></tr>")
        out.append("</table>")
    return "".join(out)


def _degraded(all_cases: list[dict[str, Any]]) -> str:
    deg = [(case_label(c, i), dct(c.get("degraded"))) for i, c in enumerate(all_cases) if c.get("degraded")]
    if not deg:
        return ""
    return ("<div class='banner'><b>Degraded (canary) run:</b> these cases injected a stronger fault than their "
            "names say, so that the comparison with earlier runs must flag them: "
            + "; ".join(f"{e(n)}: {e(d)}" for n, d in deg) + "</div>")


def render(summary: dict[str, Any], snapshot: dict[str, Any] | None, snapshot_error: str | None,
           case_plots: list[list[Plot]], overview: list[Plot], *, comparison: dict[str, Any] | None = None,
           comparison_error: str | None = None) -> str:
    """The whole page; ``case_plots[i]`` belongs to the i-th case of ``cases(summary)``."""
    all_cases = cases(summary)
    title = f"dcilab report {summary.get('run_id', '')}"
    parts = [(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{e(title)}</h1>"),
             _testbed(summary, snapshot, snapshot_error), _run(summary, all_cases), _degraded(all_cases),
             _comparison(comparison, comparison_error), _verdicts(all_cases, summary), _fidelity(summary), _repeats(summary)]
    if overview:
        parts.append("<h2>Across scenarios</h2>" + "".join(_img(p) for p in overview))
    parts.append("<h2>Cases</h2>")
    parts.extend(_case_section(i, c, case_plots[i] if i < len(case_plots) else [])
                 for i, c in enumerate(all_cases))
    parts.append("</body></html>\n")
    return "".join(parts)
