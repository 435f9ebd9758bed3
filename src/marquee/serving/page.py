"""``GET /``: a small home page a person can look at, drawn in the browser from ``POST /recommend``.

Pick a member (or type a history of raw item ids), an hour and a device; each row shows its title and
reason, each title a card from its metadata in the colours of its chosen artwork. Plain HTML and a few
lines of JavaScript: the page calls the same API any client does, so it shows exactly what the API answers.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>marquee: home page</title>
<style>
 body { font-family: system-ui, sans-serif; background: #111; color: #eee; margin: 1.5rem; }
 form { display: flex; gap: .8rem; flex-wrap: wrap; align-items: end; margin-bottom: 1rem; }
 label { display: flex; flex-direction: column; font-size: .8rem; color: #aaa; }
 input, select, button { font-size: 1rem; padding: .3rem; }
 .row h2 { margin: 1.2rem 0 .1rem; font-size: 1.15rem; }
 .reason { margin: 0 0 .5rem; color: #999; font-size: .85rem; }
 .cards { display: flex; gap: .6rem; overflow-x: auto; }
 .card { min-width: 150px; max-width: 150px; height: 200px; border-radius: 6px; padding: .6rem;
         display: flex; flex-direction: column; justify-content: flex-end; box-shadow: 0 2px 6px #0008; }
 .card h3 { margin: 0; font-size: .95rem; } .card p { margin: .2rem 0; font-size: .75rem; opacity: .85; }
 .card small { font-size: .7rem; opacity: .7; } #error { color: #f77; }
</style></head>
<body>
<h1>marquee</h1>
<form id="ask">
 <label>member id <input id="user" value="1" size="8"></label>
 <label>or a history (raw item ids, oldest first) <input id="history" size="30" placeholder="e.g. 50, 172, 133"></label>
 <label>hour <select id="hour"></select></label>
 <label>device <select id="device"><option value="">unknown</option></select></label>
 <label>rows <input id="rows" type="number" value="3" min="1" max="10"></label>
 <label>titles per row <input id="k" type="number" value="8" min="1" max="50"></label>
 <button id="show" type="submit">Show the page</button>
</form>
<p id="error"></p>
<div id="page"></div>
<script>
const $ = (id) => document.getElementById(id);
for (let h = 0; h < 24; h++) $("hour").add(new Option(String(h).padStart(2, "0") + ":00", h, h === 21, h === 21));
fetch("/health").then((r) => r.json()).then((health) => {
  for (const d of health.devices || []) $("device").add(new Option(d, d));
});
function hue(text) {  // the artwork's theme: a colour that is the same for the same artwork
  let h = 0; for (const c of text) h = (h * 31 + c.charCodeAt(0)) % 360; return h;
}
function card(item) {
  const el = document.createElement("article");
  el.className = "card"; el.dataset.item = item.item_id; el.dataset.artwork = item.artwork;
  const h = hue(String(item.artwork));
  el.style.background = `linear-gradient(160deg, hsl(${h},55%,45%), hsl(${(h + 40) % 360},60%,18%))`;
  el.innerHTML = "<h3></h3><p></p><small></small>";
  el.querySelector("h3").textContent = item.title ?? String(item.item_id);
  el.querySelector("p").textContent = (item.genres || []).join(" · ");
  el.querySelector("small").textContent = `artwork ${item.artwork} (p ${item.propensity.toFixed(2)})`;
  return el;
}
async function show(event) {
  if (event) event.preventDefault();
  const body = { k: +$("k").value, rows: +$("rows").value, context: { hour: +$("hour").value } };
  if ($("device").value) body.context.device = $("device").value;
  const history = $("history").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (history.length) body.history = history; else body.user_id = $("user").value.trim();
  const answer = await fetch("/recommend", { method: "POST", headers: { "content-type": "application/json" },
                                             body: JSON.stringify(body) });
  const data = await answer.json();
  $("error").textContent = answer.ok ? "" : data.error;
  const page = $("page"); page.replaceChildren(); page.dataset.member = body.user_id ?? "history";
  if (!answer.ok) return;
  for (const row of data.rows) {
    const section = document.createElement("section"); section.className = "row";
    section.innerHTML = "<h2></h2><p class='reason'></p><div class='cards'></div>";
    section.querySelector("h2").textContent = row.title;
    section.querySelector(".reason").textContent = row.reason;
    for (const item of row.items) section.querySelector(".cards").append(card(item));
    page.append(section);
  }
  page.dataset.ready = "1";
}
$("ask").addEventListener("submit", show);
show();
</script></body></html>
"""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home_page() -> str:
    """The page; everything on it comes from ``/health`` and ``/recommend``."""
    return PAGE
