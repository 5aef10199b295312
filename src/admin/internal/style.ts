/**
 * The admin's stylesheet, shipped inside the package (no CDN, no web fonts): served at `<path>/style.css`, the
 * only style source the Content-Security-Policy allows. Light and dark through `prefers-color-scheme`; tables
 * scroll sideways and forms stack on narrow screens.
 */
export const stylesheet = `
:root {
  color-scheme: light dark;
  --bg: #f6f7f9;
  --surface: #ffffff;
  --surface-2: #f0f2f5;
  --text: #1c2330;
  --muted: #5d6778;
  --border: #dde1e7;
  --accent: #2f6feb;
  --accent-text: #ffffff;
  --danger: #c9372c;
  --danger-bg: #fdecea;
  --ok: #1f883d;
  --ok-bg: #e6f4ea;
  --warn: #9a6700;
  --warn-bg: #fff4d6;
  --bar-track: #e6e9ee;
  --bar-fill: #2f6feb;
  --radius: 8px;
  --mono: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1218;
    --surface: #171b23;
    --surface-2: #1e232d;
    --text: #e4e8ef;
    --muted: #98a2b3;
    --border: #2c3340;
    --accent: #5b93ff;
    --accent-text: #0b0e13;
    --danger: #ff7b72;
    --danger-bg: #3a1d1c;
    --ok: #56d364;
    --ok-bg: #16301d;
    --warn: #e3b341;
    --warn-bg: #33290f;
    --bar-track: #2a303b;
    --bar-fill: #5b93ff;
  }
}
*, *::before, *::after { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0;
  background: var(--bg);
  color: var(--text);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, pre, .mono { font-family: var(--mono); font-size: 13px; }
header.top {
  background: var(--surface);
  border-bottom: 1px solid var(--border);
}
header.top .inner {
  max-width: 1160px;
  margin: 0 auto;
  padding: 10px 20px;
  display: flex;
  flex-wrap: wrap;
  align-items: center;
  gap: 8px 20px;
}
.brand { font-weight: 700; color: var(--text); letter-spacing: -0.01em; }
.brand span { color: var(--accent); }
nav.links { display: flex; flex-wrap: wrap; gap: 4px; flex: 1; }
nav.links a {
  padding: 4px 10px;
  border-radius: 6px;
  color: var(--muted);
}
nav.links a.active, nav.links a:hover { background: var(--surface-2); color: var(--text); text-decoration: none; }
.who { display: flex; align-items: center; gap: 10px; color: var(--muted); font-size: 14px; margin-left: auto; }
.who form { margin: 0; }
main {
  max-width: 1160px;
  margin: 0 auto;
  padding: 20px;
}
h1 { font-size: 22px; margin: 4px 0 16px; letter-spacing: -0.01em; }
h2 { font-size: 17px; margin: 0 0 12px; }
.subtitle { color: var(--muted); margin: -10px 0 18px; word-break: break-all; }
.card {
  background: var(--surface);
  border: 1px solid var(--border);
  border-radius: var(--radius);
  padding: 16px;
  margin-bottom: 18px;
}
.grid { display: grid; gap: 12px; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); margin-bottom: 18px; }
.metric {
  background: var(--surface);
  border: 1px solid var(--border);
  border-radius: var(--radius);
  padding: 12px 14px;
}
.metric .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: 0.04em; }
.metric .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.metric .value.mono { font-size: 16px; line-height: 33px; word-break: break-all; }
.table-wrap { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid var(--border); vertical-align: middle; }
th { color: var(--muted); font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: 0.04em; white-space: nowrap; }
td.num, th.num { text-align: right; }
tr:last-child td { border-bottom: none; }
td.key { font-family: var(--mono); font-size: 13px; word-break: break-all; min-width: 180px; }
td.when { white-space: nowrap; }
.ratio { display: flex; align-items: center; gap: 8px; min-width: 150px; }
.ratio svg { flex: 1; min-width: 80px; height: 10px; border-radius: 5px; }
.ratio .track { fill: var(--bar-track); }
.ratio .fill { fill: var(--bar-fill); }
.ratio .pct { width: 3.5em; text-align: right; font-size: 13px; }
.card > .ratio { margin-bottom: 16px; }
.badge {
  display: inline-block;
  padding: 1px 8px;
  border-radius: 999px;
  font-size: 12px;
  font-weight: 600;
  background: var(--surface-2);
  color: var(--muted);
  white-space: nowrap;
}
.badge.fresh, .badge.ok, .badge.decoded { background: var(--ok-bg); color: var(--ok); }
.badge.stale, .badge.mismatch, .badge.warn { background: var(--warn-bg); color: var(--warn); }
.badge.loading, .badge.raw, .badge.empty { background: var(--surface-2); color: var(--muted); }
.badge.corrupt, .badge.down, .badge.hard { background: var(--danger-bg); color: var(--danger); }
.badge.soft { background: var(--warn-bg); color: var(--warn); }
form.inline { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-end; margin: 0; }
form.stack { display: grid; gap: 12px; max-width: 420px; }
label { display: grid; gap: 4px; font-size: 13px; color: var(--muted); }
label.choice { display: inline-flex; align-items: center; gap: 6px; color: var(--text); font-size: 14px; }
input[type="text"], input[type="password"], input[type="search"], select {
  font: inherit;
  color: var(--text);
  background: var(--surface);
  border: 1px solid var(--border);
  border-radius: 6px;
  padding: 7px 10px;
  min-width: 0;
}
input[type="text"], input[type="search"] { flex: 1 1 220px; }
input:focus, select:focus, button:focus, a:focus { outline: 2px solid var(--accent); outline-offset: 1px; }
button, .button {
  font: inherit;
  font-weight: 600;
  display: inline-block;
  border: 1px solid var(--accent);
  background: var(--accent);
  color: var(--accent-text);
  border-radius: 6px;
  padding: 7px 14px;
  cursor: pointer;
  line-height: 1.3;
}
.button:hover { text-decoration: none; }
button.secondary, .button.secondary { background: transparent; color: var(--accent); }
button.danger, .button.danger { background: var(--danger); border-color: var(--danger); color: #fff; }
button.link { background: none; border: none; color: var(--accent); padding: 0; font-weight: 500; }
.actions { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin-top: 14px; }
dl.props { display: grid; grid-template-columns: max-content 1fr; gap: 6px 16px; margin: 0; }
dl.props dt { color: var(--muted); font-size: 13px; }
dl.props dd { margin: 0; word-break: break-all; }
pre.value {
  background: var(--surface-2);
  border: 1px solid var(--border);
  border-radius: 6px;
  padding: 12px;
  overflow: auto;
  max-height: 60vh;
  white-space: pre-wrap;
  word-break: break-all;
  margin: 0;
}
.notice { border-radius: var(--radius); padding: 12px 14px; margin-bottom: 18px; border: 1px solid var(--border); background: var(--surface); }
.notice.ok { background: var(--ok-bg); color: var(--ok); border-color: transparent; }
.notice.error { background: var(--danger-bg); color: var(--danger); border-color: transparent; }
.notice.warn { background: var(--warn-bg); color: var(--warn); border-color: transparent; }
.muted { color: var(--muted); }
.empty-state { color: var(--muted); padding: 18px 4px; text-align: center; }
.pager { display: flex; justify-content: space-between; gap: 10px; margin-top: 12px; }
.login { max-width: 400px; margin: 10vh auto 0; }
.tags { display: flex; flex-wrap: wrap; gap: 6px; }
@media (max-width: 640px) {
  body { font-size: 14px; }
  main { padding: 14px 12px; }
  header.top .inner { padding: 10px 12px; }
  nav.links { order: 3; flex-basis: 100%; margin: 0 -10px; }
  .metric .value.mono { line-height: 28px; }
  th, td { padding: 7px 6px; }
  .hide-narrow { display: none; }
  .metric .value { font-size: 19px; }
  dl.props { grid-template-columns: 1fr; gap: 2px; }
  dl.props dd { margin-bottom: 8px; }
}
`
