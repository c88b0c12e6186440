"""GPU check, part 2: attrkit against Captum and shap on the same device, values checked before timing.

Five cases (full size / ``smoke``): Integrated Gradients (50 Gauss-Legendre steps, 16 photos 224x224 through
the ResNet-18), occlusion (16x16 windows, stride 8, VGG16/4 at 224), exact Shapley (12 SLIC superpixels,
ResNet-18 at 112: 4,096 coalitions), KernelSHAP (50 superpixels, 2,000 evaluations, ResNet-18 at 224; errors
against a 20,000-evaluation permutation-sampling reference) and the layer trick (Shapley sampling, 500
evaluations, over the 7x7 cells of VGG16/4's ``features.30`` against a 7x7 pixel grid through the whole
network: no peer offers layer games). Every library gets the same model, inputs, targets and masking, on the
device; peers' coalition functions mask on the device too. Timed runs are bracketed by
``torch.cuda.synchronize()``; multiply-adds are counted by forward hooks (``benchmarks.flops``), so the rates
are lower bounds (pooling, activations and masking are not counted).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import inputs
from .case import rel_error
from .flops import WorkCounter
from .resnet import resnet18
from .workloads.common import have


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rates(device: torch.device, smoke: bool) -> dict:
    """Median GFLOP/s of square float32 and bfloat16 matrix products on ``device`` (TF32 as set globally)."""
    n, reps = (256, 5) if smoke else (8192, 20)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        rates = []
        for _ in range(reps):
            sync(device)
            t0 = time.perf_counter()
            a @ b
            sync(device)
            rates.append(2.0 * n ** 3 / (time.perf_counter() - t0) / 1e9)
        out[name] = statistics.median(rates)
    return out


class MaskGame:
    """``z [B, l] (0/1) -> model(x * z[seg])[:, t]`` on the model's device, in chunks: the coalition function
    shap's explainers get (numpy in, numpy out, as they call it)."""

    def __init__(self, model, x, seg, t, chunk):
        self.model, self.x, self.t, self.chunk = model, x, int(t), int(chunk)
        self.l = int(seg.max()) + 1
        self.onehot = torch.nn.functional.one_hot(seg.reshape(-1).to(x.device), self.l).to(x.dtype)
        self.shape = tuple(seg.shape)

    @torch.no_grad()
    def __call__(self, z) -> np.ndarray:
        z = torch.as_tensor(np.asarray(z), dtype=self.x.dtype).to(self.x.device)
        out = []
        for s in range(0, z.shape[0], self.chunk):
            mask = (z[s:s + self.chunk] @ self.onehot.T).view(-1, 1, *self.shape)
            out.append(self.model(self.x * mask)[:, self.t].double())
        return torch.cat(out).cpu().numpy() if out else np.zeros(0)


@dataclass
class Row:
    library: str
    label: str
    run: object                        # () -> result
    values: object                     # result -> tensor compared by the case's check
    settings: str = ""
    primary: bool = False
    out: dict = field(default_factory=dict)


def _explain(model, x, method, t, **opts):
    import attrkit as ak
    return lambda: ak.explain(model, x, method=method, target=t, progress=False, **opts)


def _player_values(a) -> torch.Tensor:
    return a.info["player_values"][0, :, 0] if a.info["player_values"].dim() == 3 else a.info["player_values"][0]


def _per_player(attr, seg, l) -> torch.Tensor:
    from .workloads.w5_sampling import _per_player as per
    return per(torch.as_tensor(attr).detach().cpu(), seg.cpu(), l)


def _chunk(model, x) -> int:
    from .workloads.w4_occlusion import _chunk as chunk
    return chunk(model, x)


def cases(device: torch.device, smoke: bool) -> list[tuple[str, float, object, list[Row], object]]:
    """``(title, tolerance, check kind, rows, model)`` per case, models and inputs on ``device``."""
    net = resnet18(8 if smoke else 64).to(device)
    vgg = net if smoke else inputs.model("vgg16_quarter").to(device)
    return [_ig(net, device, smoke), _occlusion(vgg, device, smoke), _exact(net, device, smoke),
            _kernel(net, device, smoke), _layer(net if smoke else vgg, device, smoke)]


def _ig(net, d, smoke):
    x = inputs.crops(2 if smoke else 16, 32 if smoke else 224).to(d)
    t = inputs.predicted(net, x)
    steps = 4 if smoke else 50
    rows = [Row("attrkit", "attrkit", _explain(net, x, "integrated_gradients", t, steps=steps, rule="gauss_legendre",
                                               baseline="zeros"), lambda a: a.values, f"steps={steps}", True)]
    if have("captum"):
        from captum.attr import IntegratedGradients

        from .workloads.common import default_chunk
        ig = IntegratedGradients(net)
        for b in (None, default_chunk(net, x)):
            rows.append(Row("captum", f"captum ibs={b}", (lambda b=b: ig.attribute(
                x, target=t, n_steps=steps, method="gausslegendre", internal_batch_size=b)), lambda v: v,
                f"internal_batch_size={b}"))
    return (f"IG {steps} steps, ResNet-18{'/8' if smoke else ''}, {x.shape[0]} x {x.shape[-1]}px", 1e-3, "agree",
            rows, net)


def _occlusion(vgg, d, smoke):
    img = inputs.chelsea(32 if smoke else 224).to(d)
    t = inputs.predicted(vgg, img)
    win, stride = (8, 4) if smoke else (16, 8)
    rows = [Row("attrkit", "attrkit", _explain(vgg, img, "occlusion", t, window=win, stride=stride, baseline="zeros"),
                lambda a: a.values, f"window={win}, stride={stride}", True)]
    if have("captum"):
        from captum.attr import Occlusion
        occ = Occlusion(vgg)
        for ppe in (1, _chunk(vgg, img)):
            rows.append(Row("captum", f"captum ppe={ppe}", (lambda ppe=ppe: occ.attribute(
                img, sliding_window_shapes=(3, win, win), strides=(3, stride, stride), baselines=0.0, target=t,
                perturbations_per_eval=ppe)), lambda v: v, f"perturbations_per_eval={ppe}"))
    return (f"occlusion {win}x{win} stride {stride}, {'ResNet-18/8' if smoke else 'VGG16/4'}, {img.shape[-1]}px", 1e-3,
            "agree", rows, vgg)


def _exact(net, d, smoke):
    import attrkit as ak
    xs = inputs.chelsea(32 if smoke else 112).to(d)
    seg = (ak.grid(xs.cpu(), cells=(2, 3))[0] if smoke else inputs.superpixels(xs.cpu(), 12)).to(d)
    l, t = int(seg.max()) + 1, inputs.predicted(net, xs)
    chunk = _chunk(net, xs)
    rows = [Row("attrkit", "attrkit", _explain(net, xs, "shapley", t, players=seg[None], baseline="zeros",
                                               batch_size=chunk), _player_values, f"batch_size={chunk}", True)]
    if have("shap") and not smoke:            # (its first call compiles numba code for ~30 s: not in smoke runs)
        import shap
        game = MaskGame(net, xs, seg, t, chunk)
        explainer = shap.ExactExplainer(game, shap.maskers.Independent(np.zeros((1, l)), max_samples=1))
        rows.append(Row("shap", "shap ExactExplainer", lambda: explainer(np.ones((1, l)), max_evals=(1 << l) + 1,
                                                                          batch_size=chunk, silent=True),
                        lambda r: torch.as_tensor(np.asarray(r.values)).reshape(-1), f"batch_size={chunk}"))
    return (f"exact Shapley, {l} players ({1 << l} coalitions), ResNet-18{'/8' if smoke else ''}, {xs.shape[-1]}px",
            1e-3, "agree", rows, net)


def _kernel(net, d, smoke):
    import attrkit as ak
    xk = inputs.chelsea(32 if smoke else 224).to(d)
    seg = (ak.grid(xk.cpu(), cells=4)[0] if smoke else inputs.superpixels(xk.cpu(), 50)).to(d)
    l, t = int(seg.max()) + 1, inputs.predicted(net, xk)
    n, chunk = (64 if smoke else 2000), _chunk(net, xk)
    ref = _explain(net, xk, "shapley_sampling", t, players=seg[None], baseline="zeros", n_samples=(4 if smoke else 10) * n,
                   seed=1)()
    reference = _player_values(ref).double().cpu()
    rows = [Row("attrkit", "attrkit", _explain(net, xk, "kernel_shap", t, players=seg[None], baseline="zeros",
                                               n_samples=n, seed=0), _player_values, f"n_samples={n}", True)]
    if have("shap"):
        import shap
        kexp = shap.KernelExplainer(MaskGame(net, xk, seg, t, chunk), np.zeros((1, l)))

        def shap_run():
            np.random.seed(0)
            return kexp.shap_values(np.ones((1, l)), nsamples=n, l1_reg=False, silent=True)
        rows.append(Row("shap", "shap KernelExplainer", shap_run,
                        lambda v: torch.as_tensor(np.asarray(v)).reshape(-1)[:l], f"nsamples={n}, l1_reg=False"))
    if have("captum"):
        from captum.attr import KernelShap
        ks = KernelShap(net)
        rows.append(Row("captum", f"captum KernelShap ppe={chunk}", lambda: ks.attribute(
            xk, baselines=0.0, target=t, feature_mask=seg[None, None], n_samples=n, perturbations_per_eval=chunk),
            lambda v: _per_player(v, seg, l), f"n_samples={n}"))
    return (f"KernelSHAP, {l} players, {n} evaluations, ResNet-18{'/8' if smoke else ''}, {xk.shape[-1]}px",
            2.0 if smoke else 0.5,                                    # (smoke budgets test the plumbing only)
            ("reference", reference), rows, net)


def _layer(model, d, smoke):
    import attrkit as ak
    xl = inputs.chelsea(32 if smoke else 224).to(d)
    layer, cells = ("layer2", 4) if smoke else ("features.30", 7)
    t, budget = inputs.predicted(model, xl), (64 if smoke else 500)
    grid = ak.grid(xl.cpu(), cells=cells).to(d)
    common = dict(baseline="zeros", n_samples=budget, seed=0)
    rows = [Row("attrkit", f"attrkit {layer} cells", _explain(model, xl, "shapley_sampling", t, layer=layer, **common),
                lambda a: a, f"{cells}x{cells} cells of {layer}", True),
            Row("attrkit", "attrkit pixel grid, whole network", _explain(
                model, xl, "shapley_sampling", t, players=grid, local=False, **common), lambda a: a,
                f"{cells}x{cells} pixel grid, local=False"),
            Row("attrkit", f"attrkit {layer} cells, kernel_shap", _explain(
                model, xl, "kernel_shap", t, layer=layer, **common), lambda a: a, f"{cells}x{cells} cells of {layer}")]
    return (f"layer trick: Shapley sampling {budget} evaluations, {cells * cells} players, "
            f"{'ResNet-18/8' if smoke else 'VGG16/4'} {xl.shape[-1]}px", 1e-3, "efficiency", rows, model)


def check(kind, tol, row: Row, result, first: Row) -> tuple[bool, float, str]:
    """``(ok, error, what)`` for one row's result."""
    if kind == "efficiency":
        a = result
        delta = float(a.info["full_value"][0] - a.info["base_value"][0])
        gap = abs(float(_player_values(a).sum()) - delta) / max(abs(delta), 1e-12)
        return gap <= tol, gap, "efficiency gap"
    if isinstance(kind, tuple):
        err = rel_error(row.values(result), kind[1])
        return err <= tol, err, "rel. L2 to a permutation-sampling reference"
    err = rel_error(row.values(result), first.out["values"]) if row is not first else 0.0
    return err <= tol, err, f"rel. L2 to {first.label}"


def run(device: torch.device, smoke: bool, rates: dict, say=print) -> list[dict]:
    """Check, then time (median of 3) every row of every case; one dict per row. Smoke runs time the checked
    run itself (single-digit milliseconds: the figures only show the plumbing works)."""
    repeats = 0 if smoke else 3
    results = []
    for title, tol, kind, rows, model in cases(device, smoke):
        say(f"  {title}")
        for r in rows:                                  # the checked run, with its multiply-adds counted
            counter = WorkCounter(model)
            with counter:
                sync(device)
                t0 = time.perf_counter()
                res = r.run()
                sync(device)
                r.out["first_s"] = time.perf_counter() - t0
            r.out["values"] = r.values(res) if kind != "efficiency" else None
            r.out["flops"] = counter.as_dict()["flops"]
            ok, err, what = check(kind, tol, r, res, rows[0])
            r.out.update(ok=ok, error=err, what=what)
        for r in rows:
            if not r.out["ok"]:
                continue
            ts = []
            for _ in range(repeats):
                sync(device)
                t0 = time.perf_counter()
                r.run()
                sync(device)
                ts.append(time.perf_counter() - t0)
            r.out["median_s"] = statistics.median(ts) if ts else r.out["first_s"]
        prim = rows[0].out.get("median_s")
        for r in rows:
            med = r.out.get("median_s")
            g = r.out["flops"] / med / 1e9 if med else None
            results.append({"case": title, "library": r.library, "label": r.label, "settings": r.settings,
                            "ok": r.out["ok"], "error": r.out["error"], "what": r.out["what"], "median_s": med,
                            "ratio": (prim / med if r is not rows[0] else 1.0) if med and prim else None,
                            "gflops": g, "pct_fp32": 100 * g / rates["fp32"] if g else None,
                            "pct_bf16": 100 * g / rates["bf16"] if g else None})
    return results


def table(results: list[dict]) -> str:
    """Markdown: one line per library row; ratio = attrkit's time / this row's time (first row per case)."""
    out = ["| case | implementation | check | median s | attrkit / this | GFLOP/s | % fp32 rate | % bf16 rate |",
           "|---|---|---|---|---|---|---|---|"]
    f = lambda v, spec: "-" if v is None else format(v, spec)   # noqa: E731
    for r in results:
        chk = f"{'ok' if r['ok'] else 'FAIL'} ({r['what']} {r['error']:.1e})"
        out.append(f"| {r['case']} | {r['label']} | {chk} | {f(r['median_s'], '.3f')} | {f(r['ratio'], '.2f')} | "
                   f"{f(r['gflops'], '.0f')} | {f(r['pct_fp32'], '.1f')} | {f(r['pct_bf16'], '.2f')} |")
    return "\n".join(out)
