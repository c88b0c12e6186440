"""The report page's style sheet, help text and page skeleton (static; no user data here)."""

CSS = r"""
:root { --ink:#1d2327; --muted:#5f6b73; --line:#d9dee2; --bg:#fafbfc; --red:#d6171c; --blue:#2154cc; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--ink); background:var(--bg); }
header { padding:14px 22px 8px; border-bottom:1px solid var(--line); background:#fff; }
h1 { font-size:20px; margin:0 0 2px; } h2 { font-size:16px; margin:22px 0 8px; } h3 { font-size:13px; margin:12px 0 4px; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; }
.sub { color:var(--muted); margin:0; font-size:13px; }
main { padding:6px 22px 40px; max-width:1300px; }
@media (max-width: 600px) { main { padding:6px 10px 30px; } header { padding:10px 10px 6px; }
  .controls { position:static; } .controls select { min-width:120px; } }
.controls { display:flex; flex-wrap:wrap; gap:10px 18px; align-items:flex-end; padding:12px 0; position:sticky; top:0; background:var(--bg); z-index:2; border-bottom:1px solid var(--line); }
.controls label { display:flex; flex-direction:column; font-size:12px; color:var(--muted); gap:2px; max-width:100%; }
.controls label.off { display:none; }
.controls select { font-size:14px; padding:3px 4px; min-width:150px; max-width:280px; }
.controls input[type=range] { width:140px; }
.panels { display:flex; flex-wrap:wrap; gap:22px; margin-top:14px; align-items:flex-start; }
figure { margin:0; }
figcaption { font-size:13px; color:var(--muted); margin-top:6px; max-width:340px; overflow-wrap:anywhere; }
.panels > figure, .panels > .side { max-width:100%; min-width:0; }
.imgbox { width:min(320px, 100%); background:#fff; border:1px solid var(--line); }
.imgbox.wide { width:min(640px, 100%); }
.imgbox img, .imgbox canvas { display:block; width:100%; image-rendering:pixelated; }
#stack { position:relative; }
#stack canvas { position:absolute; left:0; top:0; }
#stack canvas#heat { position:relative; cursor:crosshair; }
#bars { image-rendering:auto !important; cursor:crosshair; }
.cbar { width:min(320px, 100%); margin-top:8px; }
.cbar .ramp { height:12px; border:1px solid var(--line); background:linear-gradient(to right, var(--blue), rgba(255,255,255,0) 50%, var(--red)); }
.cbar .ticks { display:flex; justify-content:space-between; font-size:12px; color:var(--muted); }
#value { font: 13px ui-monospace,Menlo,Consolas,monospace; margin-top:8px; min-height:2.6em; max-width:330px; }
.side { min-width:min(260px, 100%); max-width:380px; }
table { border-collapse:collapse; font-size:13px; background:#fff; }
.scroll { max-width:100%; overflow-x:auto; margin-bottom:16px; }
.scroll table { margin-bottom:0; }
.side table, #input-box table { display:block; max-width:100%; overflow-x:auto; }
td, th { border:1px solid var(--line); padding:3px 8px; text-align:left; vertical-align:top; }
td { overflow-wrap:anywhere; }
th { background:#f0f3f5; font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
.tables table { margin-bottom:16px; }
.figs { display:flex; flex-wrap:wrap; gap:18px; }
.figs figure { background:#fff; border:1px solid var(--line); padding:8px; max-width:100%; min-width:0; overflow-x:auto; }
.figs img { max-width:100%; display:block; cursor:zoom-in; }
.figs img.full { max-width:none; cursor:zoom-out; }
.figs figcaption { max-width:640px; }
.help { color:var(--muted); font-size:13px; max-width:900px; }
.swatch { display:inline-block; width:12px; height:12px; vertical-align:-1px; border:1px solid var(--line); }
.na { color:var(--muted); font-style:italic; }
.empty { padding:40px; color:var(--muted); }
"""

HELP = """
<h2>How to read the maps</h2>
<p class="help">Each map says how much each part of the input pushed the model's score for the chosen
<b>target</b> class up or down, according to one attribution <b>method</b>.
<span class="swatch" style="background:var(--red)"></span> red: raised the score ·
<span class="swatch" style="background:var(--blue)"></span> blue: lowered it · clear: no effect.
The colour scale is symmetric around 0 and ends at the 99.5th percentile of the map's absolute values
(brighter values are shown at full colour). Gradient maps computed at the input (<i>pixels</i>) are shown on
their own; maps computed at a hidden <b>layer</b> are coarse, so they are enlarged to the image size and laid over
the image in grey (use the opacity slider), and so are the maps of coalition methods and occlusion, whose players
are regions of the image. Coalition maps paint each player with its value. Lines mark the superpixels or cells that coalition methods (Shapley,
LIME, occlusion) treat as players. Hover over a map to read its value. The table beside the map lists the
method's own error figures, e.g. the completeness gap of path methods (how far the map's sum is from the change
of the score) or the standard error of sampled estimates: a map is only as trustworthy as these.</p>
"""


BODY = """
<header><h1>{title}</h1><p class="sub" id="subtitle"></p></header>
<main>
<section id="viewer">
  <div class="controls">
    <label>sample<select id="pick-sample"></select></label>
    <label>method<select id="pick-method"></select></label>
    <label>target class<select id="pick-target"></select></label>
    <label>layer<select id="pick-layer"></select></label>
    <label>show<select id="mode">
      <option value="signed">signed (red + / blue −)</option><option value="positive">positive only</option>
      <option value="negative">negative only</option><option value="absolute">magnitude |value|</option></select></label>
    <label id="ctl-background">under the map<select id="background">
      <option value="auto">auto: grey image under layer and game maps</option><option value="grey">grey image</option>
      <option value="none">nothing (white)</option></select></label>
    <label id="ctl-opacity">map opacity <span id="opacity-value">80%</span><input id="opacity" type="range" min="0" max="100" value="80"></label>
    <label id="ctl-edges">players<span><input id="edges" type="checkbox" checked> outline</span></label>
  </div>
  <div class="panels">
    <figure><div class="imgbox" id="input-box"></div><figcaption id="input-cap"></figcaption></figure>
    <figure>
      <div class="imgbox" id="map-box"><div id="stack"><canvas id="base"></canvas><canvas id="heat"></canvas></div>
        <canvas id="bars" style="display:none"></canvas></div>
      <figcaption id="map-cap"></figcaption>
      <div class="cbar"><div class="ramp" id="ramp"></div>
        <div class="ticks"><span id="cb-min"></span><span id="cb-mid"></span><span id="cb-max"></span></div></div>
      <div id="value" style="white-space:pre-line"></div>
    </figure>
    <div class="side"><h3>model's prediction</h3><table id="pred"></table>
      <h3>this map: output and error figures</h3><table id="info"></table></div>
  </div>
</section>
<section id="tables" class="tables"></section>
<section id="figures"></section>
<section id="notes"></section>
{help}
</main>
"""
