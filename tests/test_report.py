"""The interactive report in a real browser: headless Debian Chromium driven by Playwright."""
import base64
import os
import re
import shutil
import tempfile

import numpy as np
import pytest
import torch

import attrkit as ak
from attrkit.html_report import report
from attrkit.html_report.encode import script_json
from attrkit.viz import view
from attrkit.viz.colors import scale_for

from conftest import TinyCNN, tiny_mlp

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
EVIL = "<script>window.__pwned=1</script>"
CLASSES = ["circle", EVIL, "triangle", "star"]

pytestmark = pytest.mark.browser


# ------------------------------------------------------------------------------------------ no browser
def test_script_json_cannot_close_the_script_element():
    text = script_json({"name": "</script><script>alert(1)</script>", "amp": "a & b", "sep": "\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    import json
    assert json.loads(text)["name"] == "</script><script>alert(1)</script>"


def test_report_rejects_bad_items(tmp_path):
    with pytest.raises(TypeError, match="Attribution"):
        report([torch.zeros(3)], tmp_path / "r.html")
    with pytest.raises(TypeError, match="table"):
        report([], tmp_path / "r.html", tables={"t": [1, 2]})


def test_items_can_carry_their_own_names(attrs, tmp_path):
    import json
    tab = attrs["table"]
    img = attrs[("saliency", 0, None)]
    path = report([{"attribution": img, "class_names": CLASSES, "sample_names": ["a.png", "b.png"]},
                   {"attribution": tab, "class_names": ["no", "yes", "maybe"], "label": "IG (16 steps)",
                    "feature_names": list("vwxyz")}], tmp_path / "r.html")
    html = path.read_text()
    data = json.loads(re.search(r'id="attrkit-data">(.*?)</script>', html, re.S).group(1))
    assert [s["name"] for s in data["samples"]] == ["a.png", "b.png", "sample 2", "sample 3"]
    assert {m["target"] for m in data["maps"]} == {"circle", "yes"}
    assert {m["method"] for m in data["maps"]} == {"saliency", "IG (16 steps)"}
    assert data["samples"][2]["feature_names"] == list("vwxyz")
    with pytest.raises(TypeError, match="unknown report item key"):
        report([{"attribution": img, "colour": 1}], tmp_path / "r.html")


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def attrs():
    model = TinyCNN(classes=4, size=16).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = {}
    for method in ("saliency", "integrated_gradients"):
        for t in (0, 1):
            out[(method, t, None)] = ak.explain(model, x, method, target=t, **({"steps": 8} if method != "saliency" else {}))
        out[(method, 0, "features.2")] = ak.explain(model, x, method, target=0, layer="features.2",
                                                    **({"steps": 8} if method != "saliency" else {}))
    mlp = tiny_mlp(n_in=5, classes=3)
    out["table"] = ak.explain(mlp, torch.randn(2, 5), "integrated_gradients", target=1, steps=16)
    return out


@pytest.fixture(scope="module")
def page_file(attrs, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    items = [a for k, a in attrs.items() if k != "table"] + [attrs["table"]]
    tables = {"deletion <b>area</b>": [{"method": "saliency", "area": 0.31}, {"method": EVIL, "area": 0.2}]}
    report(items, path, title="attrkit <i>test</i>", class_names=CLASSES, sample_names=["cat.png", EVIL],
           feature_names=["age", "bmi", "bp", "s1", "s2"], tables=tables, notes=["a & b"])
    return path


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        why = "Debian chromium is not installed (apt-get install -y chromium; `make test` does it)"
        if os.environ.get("ATTRKIT_REQUIRE_BROWSER"):   # set by `make test`: there a missing browser is a failure
            pytest.fail(why)
        pytest.skip(why)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    user_dir = tempfile.mkdtemp(prefix="attrkit-chromium-")
    pw = sync_api.sync_playwright().start()
    ctx = pw.chromium.launch_persistent_context(user_dir, executable_path=CHROMIUM, headless=True, args=ARGS,
                                                viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()
    pw.stop()
    shutil.rmtree(user_dir, ignore_errors=True)


@pytest.fixture
def page(browser, page_file):
    pg = browser.new_page()
    errors, requests = [], []
    pg.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    pg.on("request", lambda r: requests.append(r.url))
    pg.goto(page_file.as_uri())
    pg.wait_for_selector("body[data-ready='1']", timeout=15000)
    yield pg
    pg.wait_for_timeout(50)
    assert not errors, errors                                       # no console errors, ever
    assert all(u.startswith(("file:", "data:")) for u in requests), requests   # no network
    pg.close()


def _heat(pg) -> str:
    return pg.evaluate("document.getElementById('heat').toDataURL()")


def _hover(pg, x, y, w=16, h=16):
    box = pg.locator("#heat").bounding_box()
    pg.mouse.move(box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h)
    return pg.locator("#value")


# ------------------------------------------------------------------------------------------ browser
def test_report_opens_offline_and_shows_the_first_map(page, page_file, tmp_path):
    html = page_file.read_text()
    assert "http://" not in html and "https://" not in html              # nothing to fetch
    assert EVIL not in html                                              # user text only as escaped JSON
    assert page.title() == "attrkit <i>test</i>"                         # escaped title shown as text
    assert page.locator("#pick-method option").all_inner_texts() == ["saliency", "integrated_gradients"]
    assert page.locator("#pick-sample").input_value() == "0"
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert page.locator("#tables td").all_inner_texts()[:4] == ["saliency", "0.31", EVIL, "0.2"]


def test_class_name_with_script_is_shown_as_text_not_run(page):
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script").count() == 2                           # the data block and the page script
    page.select_option("#pick-sample", "1")
    assert page.locator("#pick-sample option").all_inner_texts() == ["cat.png", EVIL, "sample 2", "sample 3"]
    page.select_option("#pick-target", label=EVIL)
    assert page.locator("#pick-target").evaluate("s => s.options[s.selectedIndex].text") == EVIL
    assert EVIL in page.locator("#map-cap").inner_text()
    assert page.evaluate("window.__pwned") is None


def test_switching_method_and_target_changes_the_image(page, attrs):
    first = _heat(page)
    page.select_option("#pick-method", "integrated_gradients")
    second = _heat(page)
    assert second != first
    assert page.locator("#pick-target").input_value() == "circle"        # the other choices are kept
    page.select_option("#pick-target", label=EVIL)
    third = _heat(page)
    assert third not in (first, second)
    assert "integrated_gradients" in page.locator("#map-cap").inner_text()


def test_value_under_the_cursor_is_the_attribution(page, attrs):
    page.select_option("#pick-method", "integrated_gradients")
    v = view(attrs[("integrated_gradients", 0, None)], 0)
    for (x, y) in [(3, 5), (12, 1), (15, 15)]:
        shown = _hover(page, x, y)
        assert float(shown.get_attribute("data-value")) == pytest.approx(v.map[y, x], rel=1e-6, abs=1e-12)
        assert f"(x={x}, y={y})" in shown.inner_text()
    s = scale_for(v.map)                                                 # the colour bar states the scale
    assert float(page.locator("#cb-max").inner_text().split()[0]) == pytest.approx(s.vmax, rel=1e-3)
    assert float(page.locator("#cb-min").inner_text().split()[0]) == pytest.approx(-s.vmax, rel=1e-3)


def test_layer_map_over_grey_image_with_opacity_and_cell_readout(page, attrs):
    page.select_option("#pick-layer", "features.2")
    assert "layer features.2" in page.locator("#map-cap").inner_text()
    page.wait_for_timeout(100)
    base = page.evaluate("""() => { const c = document.getElementById('base');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let grey = 0, white = 0; for (let i = 0; i < d.length; i += 4) {
          if (d[i] === d[i+1] && d[i+1] === d[i+2]) grey++; if (d[i] === 255 && d[i+1] === 255 && d[i+2] === 255) white++; }
        return [grey, white, d.length / 4]; }""")
    assert base[0] == base[2] and base[1] < base[2]                      # a grey image, not a white page
    page.locator("#opacity").fill("30")
    assert page.evaluate("document.getElementById('heat').style.opacity") == "0.3"
    a = attrs[("saliency", 0, "features.2")]
    raw = a.values[0].sum(0)
    text = _hover(page, 9, 4).inner_text()
    cell = re.search(r"layer cell \((\d+), (\d+)\): (\S+)", text)
    cx, cy = int(cell.group(1)), int(cell.group(2))
    assert float(cell.group(3)) == pytest.approx(float(raw[cy, cx]), rel=1e-3)
    page.select_option("#pick-layer", "pixels")
    assert page.evaluate("document.getElementById('heat').style.opacity") == "1"   # pixel maps on their own


def test_tabular_sample_and_info(page, attrs):
    page.select_option("#pick-sample", "2")
    assert page.locator("#bars").is_visible() and not page.locator("#stack").is_visible()
    assert page.locator("#input-box td").all_inner_texts()[0] == "age"
    info = dict(zip(*[iter(page.locator("#info td").all_inner_texts())] * 2))
    a = attrs["table"]
    assert "completeness_gap" in info and int(info["n_evals"]) == int(a.info["n_evals"])
    box = page.locator("#bars").bounding_box()
    values = a.values[0].numpy()
    top = int(np.argmax(np.abs(values)))                                 # the first bar is the largest
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + 18 * box["height"] / (20 * 5 + 30))
    assert float(page.locator("#value").get_attribute("data-value")) == pytest.approx(values[top], rel=1e-6)


def test_modes_change_the_scale(page):
    page.select_option("#mode", "positive")
    assert float(page.locator("#cb-min").inner_text()) == 0
    page.select_option("#mode", "absolute")
    assert page.locator("#cb-mid").inner_text() == ""


def test_pngs_are_valid(page_file):
    html = page_file.read_text()
    uris = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert uris
    from PIL import Image
    import io
    for u in uris[:4]:
        im = Image.open(io.BytesIO(base64.b64decode(u)))
        im.load()
        assert im.size == (16, 16)


# ------------------------------------------------------------------------------------------ layout (issue 17)
@pytest.fixture(scope="module")
def wide_file(attrs, tmp_path_factory):
    """A report with what used to overflow: a wide table, a wide figure, a tabular sample, a game map."""
    from attrkit.viz._mpl import new_figure
    fig = new_figure(16, 3)
    fig.subplots().plot([0, 1], [0, 1])
    model = TinyCNN(classes=4, size=16).eval()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    game = ak.explain(model, x, "kernel_shap", players=ak.grid(x, 4), n_samples=40, seed=0, target=0)
    wide = [{f"a rather long column name {k}": 0.123456 * k for k in range(18)} | {"method": "integrated_gradients"}]
    path = tmp_path_factory.mktemp("wide") / "wide.html"
    cam = ak.explain(model, x, "grad_cam", layer="features.4", target=0)           # 8x8 cells on 16x16 pixels
    report([attrs[("saliency", 0, None)], game, attrs["table"], cam], path, tables={"wide": wide},
           figures={"a wide figure": fig}, feature_names=["age", "bmi", "bp", "s1", "s2"])
    return path


@pytest.mark.parametrize("width", [1400, 390])
def test_no_horizontal_overflow_at_desktop_and_phone_width(browser, wide_file, width):
    pg = browser.new_page()
    pg.set_viewport_size({"width": width, "height": 900})
    errors = []
    pg.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(wide_file.as_uri())
    pg.wait_for_selector("body[data-ready='1']", timeout=15000)
    pg.wait_for_timeout(100)
    for sample in ("0", "2", "3"):                                   # image, game map, table row
        pg.select_option("#pick-sample", sample)
        sw, cw = pg.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert sw <= cw, f"sample {sample}: the page is {sw} px wide in a {cw} px window"
    # the wide table and figure scroll inside their own boxes; the figure is not shrunk below 640 px
    if width == 390:
        assert pg.evaluate("document.querySelector('#tables .scroll').scrollWidth > "
                           "document.querySelector('#tables .scroll').clientWidth")
    img_w = pg.evaluate("document.querySelector('.figs img').getBoundingClientRect().width")
    assert img_w >= 640 - 1
    assert not errors, errors
    pg.close()


def test_image_controls_only_for_images_and_game_maps_over_grey(browser, wide_file):
    pg = browser.new_page()
    pg.goto(wide_file.as_uri())
    pg.wait_for_selector("body[data-ready='1']", timeout=15000)
    assert pg.locator("#ctl-opacity").is_visible() and pg.locator("#ctl-background").is_visible()
    assert not pg.locator("#ctl-edges").is_visible()                 # saliency: no players to outline
    pg.select_option("#pick-sample", "2")                             # the kernel_shap map: players, over grey
    assert pg.locator("#ctl-edges").is_visible()
    assert pg.evaluate("document.getElementById('heat').style.opacity") == "0.8"
    pg.select_option("#pick-sample", "3")                             # a table row: no image controls
    for ctl in ("#ctl-opacity", "#ctl-background", "#ctl-edges"):
        assert not pg.locator(ctl).is_visible()
    pg.close()


def test_layer_maps_are_enlarged_in_the_page_as_torch_does(browser, wide_file):
    import json
    from attrkit.html_report.encode import unpack
    data = json.loads(re.search(r'id="attrkit-data">(.*?)</script>', wide_file.read_text(), re.S).group(1))
    m = next(m for m in data["maps"] if m["layer"] == "features.4")
    assert m["values"] is None and (m["lh"], m["lw"]) == (8, 8)        # only the 64 layer cells are stored
    raw = torch.from_numpy(unpack(m["raw"]).reshape(8, 8)).double()
    up = torch.nn.functional.interpolate(raw[None, None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0]
    pg = browser.new_page()
    pg.goto(wide_file.as_uri())
    pg.wait_for_selector("body[data-ready='1']", timeout=15000)
    pg.select_option("#pick-sample", "2")
    pg.select_option("#pick-method", "grad_cam")
    assert "enlarged from 8×8" in pg.locator("#map-cap").inner_text()
    for (x, y) in [(0, 0), (7, 9), (15, 3), (4, 12)]:
        shown = float(_hover(pg, x, y).get_attribute("data-value"))
        assert shown == pytest.approx(float(up[y, x]), rel=1e-5, abs=1e-9 * float(up.abs().max()))
    pg.close()


def test_arrays_are_packed_losslessly_and_layer_maps_stored_small(attrs, tmp_path):
    import json
    from attrkit.html_report.encode import packed, unpack
    x = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    assert np.array_equal(unpack(packed(x)), x.reshape(-1))
    assert np.array_equal(unpack(packed(np.arange(9) % 2, "u8")), np.arange(9) % 2)
    lay, pix = attrs[("saliency", 0, "features.2")], attrs[("saliency", 0, None)]
    html = report([lay, pix], tmp_path / "r.html").read_text()
    data = json.loads(re.search(r'id="attrkit-data">(.*?)</script>', html, re.S).group(1))
    by = {m["layer"]: m for m in data["maps"] if m["sample"] == 0}
    assert by["features.2"]["values"] is None and by["features.2"]["raw"]["n"] == by["features.2"]["lh"] * by[
        "features.2"]["lw"]                                             # only the layer's own cells are stored
    assert np.array_equal(unpack(by["pixels"]["values"]), view(pix, 0).map.astype(np.float32).reshape(-1))
