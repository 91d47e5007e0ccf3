"""The live page's HTML: one renderer, used for the page and for its updates.

The page is complete without JavaScript (a server-rendered chart and table, and a reload
every 30 s inside <noscript>); with JavaScript it fetches /api/live every 5 s and swaps in
the `html` that endpoint carries, rendered here too, so there is one renderer and no
external asset (it works offline and inside clusters). Every value from Falco is escaped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from exporter.core.delivery import FalcoView
from exporter.core.event import PRIORITY_NAMES
from exporter.core.inputs import InputStatus
from exporter.serve.live import NEW_RULE_SECONDS, LiveState

REFRESH_SECONDS = 5
# One colour per priority, Emergency to Debug; readable on light and dark backgrounds.
COLOURS = ("#b00020", "#d32f2f", "#e65100", "#f57c00", "#f9a825", "#1e88e5", "#43a047", "#757575")
_CHART_W, _CHART_H = 720, 200


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when)) if when else "never"


def _ago(now: float, when: float) -> str:
    if not when:
        return "not since start"
    seconds = max(0, int(now - when))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def chart(state: LiveState) -> str:
    """Alerts per minute over the last hour, stacked by priority, as inline SVG."""
    minutes = state.minutes
    peak = max((sum(counts) for _, counts in minutes), default=0) or 1
    width = _CHART_W / max(len(minutes), 1)
    bars: list[str] = []
    for index, (start, counts) in enumerate(minutes):
        base = float(_CHART_H)
        for priority, count in enumerate(counts):
            if not count:
                continue
            height = count / peak * (_CHART_H - 10)
            base -= height
            bars.append(
                f'<rect x="{index * width:.1f}" y="{base:.1f}" width="{max(width - 1, 1):.1f}" '
                f'height="{height:.1f}" fill="{COLOURS[priority]}">'
                f"<title>{_clock(start)[:5]} {PRIORITY_NAMES[priority]}: {count}</title></rect>"
            )
    total = sum(sum(counts) for _, counts in minutes)
    legend = "".join(
        f'<span class="key"><span class="swatch" style="background:{colour}"></span>{name}</span>'
        for colour, name in zip(COLOURS, PRIORITY_NAMES, strict=True)
    )
    return (
        f'<figure><svg id="chart" role="img" viewBox="0 0 {_CHART_W} {_CHART_H}" '
        f'data-total="{total}" data-bars="{len(bars)}" preserveAspectRatio="none">'
        f"<title>Alerts per minute, last hour: {total} in all, at most {peak} in a minute"
        f'</title><line x1="0" y1="{_CHART_H}" x2="{_CHART_W}" y2="{_CHART_H}" class="axis"/>'
        f"{''.join(bars)}</svg>"
        f"<figcaption>Alerts per minute, last hour ({total} in all). {legend}</figcaption>"
        "</figure>"
    )


def table(state: LiveState) -> str:
    """One row per rule, priority, namespace and pod; new rules highlighted."""
    new = {rule for rule, seen in state.new_rules if state.now - seen <= NEW_RULE_SECONDS}
    rows = []
    for row in state.rows:
        fresh = ' class="new"' if row.rule in new else ""
        badge = ' <span class="badge">new</span>' if row.rule in new else ""
        rows.append(
            f"<tr{fresh}><td>{escape(row.rule)}{badge}</td><td>{escape(row.priority)}</td>"
            f"<td>{escape(row.namespace)}</td><td>{escape(row.pod)}</td>"
            f'<td class="num">{row.count}</td>'
            f"<td>{_ago(state.now, row.last_seen)}</td></tr>"
        )
    body = "".join(rows) or '<tr><td colspan="6">No alert yet.</td></tr>'
    shown = _part_of(f"{len(state.rows)} most recent", len(state.rows), state.series)
    return (
        f'<div class="scroll"><table id="alerts"><caption>Alerts by rule and pod{shown}</caption>'
        '<thead><tr><th scope="col">Rule</th><th scope="col">Priority</th>'
        '<th scope="col">Namespace</th><th scope="col">Pod</th>'
        '<th scope="col" class="num">Count</th><th scope="col">Last seen</th></tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def new_rules(state: LiveState) -> str:
    """Rules seen for the first time since the exporter started."""
    items = "".join(
        f"<li><strong>{escape(rule)}</strong> first seen {_ago(state.now, seen)}</li>"
        for rule, seen in state.new_rules[:20]
    )
    return (
        '<section aria-labelledby="new"><h2 id="new">Rules seen for the first time</h2>'
        f"<ul>{items or '<li>None yet.</li>'}</ul></section>"
    )


def inputs(statuses: Sequence[InputStatus]) -> str:
    """Each input's state, marked healthy or not."""
    items = "".join(
        f'<li class="{"ok" if status.healthy else "bad"}"><strong>{escape(status.name)}</strong>: '
        f"{escape(status.state)}</li>"
        for status in statuses
    )
    return (
        f'<section aria-labelledby="inputs"><h2 id="inputs">Inputs</h2><ul>{items}</ul></section>'
    )


def recent(state: LiveState, enabled: bool) -> str:
    """The last alerts with their output lines (only with --recent-alerts)."""
    if not enabled:
        return ""
    items = "".join(
        f"<li><time>{_clock(alert.time)}</time> <strong>{escape(alert.priority)}</strong> "
        f"{escape(alert.rule)} ({escape(alert.namespace)}/{escape(alert.pod)})"
        f"<br><code>{escape(alert.output)}</code></li>"
        for alert in state.recent
    )
    return (
        '<section aria-labelledby="recent"><h2 id="recent">Recent alerts</h2>'
        f'<ol class="recent">{items or "<li>None yet.</li>"}</ol></section>'
    )


def banner(state: LiveState) -> str:
    """A warning when the series limits folded events: some alerts lack their pod or rule."""
    if not state.folded:
        return ""
    return (
        f'<p class="banner" role="alert">The series limits folded {state.folded} events into '
        "__overflow__ series: those alerts are counted without their pod, host or rule "
        "(docs/cardinality.md: --max-series and its budgets).</p>"
    )


@dataclass(frozen=True)
class Delivery:
    """Each Falco's alerts raised, received and lost (the first few), for the page."""

    falcos: Sequence[FalcoView] = ()
    tracked: int = 0
    accounting: bool = True


def _part_of(which: str, shown: int, total: int) -> str:
    """A caption's note that a table shows only part: " (the first 50 of 9000)"."""
    return f" (the {which} of {total})" if total > shown else ""


def delivery(state: Delivery, now: float) -> str:
    """Per Falco: what it raised (its metrics snapshots), what reached us, what was lost."""
    rows = []
    for falco in state.falcos:
        lost = "not counted" if falco.lost is None else str(falco.lost)
        bad = ' class="lost"' if falco.lost else ""
        raised = "no snapshot yet" if falco.raised is None else str(falco.raised)
        drops = "" if falco.kernel_drops is None else str(falco.kernel_drops)
        rows.append(
            f"<tr{bad}><td>{escape(falco.hostname)}</td><td>{escape(falco.version)}</td>"
            f'<td class="num">{raised}</td><td class="num">{falco.received}</td>'
            f'<td class="num">{lost}</td><td class="num">{drops}</td>'
            f"<td>{_ago(now, falco.last_snapshot)}</td></tr>"
        )
    body = "".join(rows) or '<tr><td colspan="7">No Falco seen yet.</td></tr>'
    shown = _part_of(f"first {len(state.falcos)}", len(state.falcos), state.tracked)
    note = (
        ""
        if state.accounting
        else '<p class="updated">Lost alerts are not counted here (--delivery-accounting '
        "false: replicas share each Falco's posts); docs/delivery.md has the query.</p>"
    )
    total_lost = sum(falco.lost or 0 for falco in state.falcos)
    warning = (
        f'<p class="banner" role="alert">{total_lost} alerts raised by Falco never reached this '
        "exporter (docs/runbooks.md#falcoalertslost).</p>"
        if total_lost
        else ""
    )
    return (
        f'<section aria-labelledby="delivery"><h2 id="delivery">Delivery</h2>{warning}{note}'
        '<div class="scroll"><table id="falcos"><caption>Alerts per Falco: raised, Falco&#39;s '
        "own count since it started or reloaded; received and lost, since this exporter "
        f'started{shown}</caption><thead><tr><th scope="col">Falco</th>'
        '<th scope="col">Version</th><th scope="col" class="num">Raised</th>'
        '<th scope="col" class="num">Received</th><th scope="col" class="num">Lost</th>'
        '<th scope="col" class="num">Kernel drops</th><th scope="col">Last snapshot</th>'
        f"</tr></thead><tbody>{body}</tbody></table></div></section>"
    )


def main_section(
    state: LiveState,
    statuses: Sequence[InputStatus],
    recent_enabled: bool,
    falcos: Delivery = Delivery(),
) -> str:
    """Everything that updates: swapped in whole by the page's script."""
    return (
        f'{banner(state)}<p class="updated">Updated {_clock(state.now)}</p>'
        f"{chart(state)}{inputs(statuses)}{delivery(falcos, state.now)}{table(state)}"
        f"{new_rules(state)}{recent(state, recent_enabled)}"
    )


_STYLE = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1b1b1b;--muted:#5f6368;--line:#ddd;--new:#fff4d6}
@media (prefers-color-scheme:dark){
:root{--bg:#121212;--fg:#e8e8e8;--muted:#a0a0a0;--line:#333;--new:#3a2f00}}
body{margin:0;font:15px/1.45 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
header,main{max-width:72rem;margin:auto;padding:0 1rem}
h1{font-size:1.3rem;margin:1rem 0 .2rem} h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
a{color:inherit} a:focus,button:focus,[tabindex]:focus{outline:3px solid #1e88e5;outline-offset:2px}
.updated,figcaption{color:var(--muted);font-size:.85rem}
svg{width:100%;height:12rem;border-bottom:1px solid var(--line)} .axis{stroke:var(--line)}
.key{white-space:nowrap;margin-right:.6rem}
.swatch{display:inline-block;width:.7rem;height:.7rem;margin:0 .25rem 0 .4rem}
.scroll{overflow-x:auto} table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
.num{text-align:right} tr.new{background:var(--new)}
.badge{font-size:.75rem;border:1px solid currentColor;border-radius:.6rem;
padding:0 .35rem;margin-left:.3rem}
.ok::before{content:"\\25CF  ";color:#43a047}.bad::before{content:"\\25CF  ";color:#d32f2f}
.banner{border-left:4px solid #d32f2f;padding:.4rem .7rem;background:var(--new)}
tr.lost td{color:#d32f2f;font-weight:600}
ul{padding-left:1.2rem} code{white-space:pre-wrap;word-break:break-word;font-size:.85rem}
"""

_SCRIPT = f"""
(function(){{
  var main=document.getElementById('live');
  function update(){{
    fetch('api/live',{{cache:'no-store'}}).then(function(r){{return r.json();}}).then(function(d){{
      main.innerHTML=d.html; main.setAttribute('data-updated', d.now);
    }}).catch(function(){{}});
  }}
  update(); setInterval(update,{REFRESH_SECONDS * 1000});
}})();
"""


def page(
    state: LiveState,
    statuses: Sequence[InputStatus],
    recent_enabled: bool,
    falcos: Delivery = Delivery(),
) -> str:
    """The whole page."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<title>falco-exporter: live</title>"
        '<noscript><meta http-equiv="refresh" content="30"></noscript>'
        f"<style>{_STYLE}</style></head><body>"
        '<header><h1>Falco alerts, live</h1><nav><a href="metrics">/metrics</a> · '
        '<a href="readyz">/readyz</a> · <a href="livez">/livez</a> · '
        '<a href="api/live">/api/live</a></nav></header>'
        '<main id="live" aria-live="polite">'
        f"{main_section(state, statuses, recent_enabled, falcos)}</main>"
        f"<script>{_SCRIPT}</script></body></html>"
    )
