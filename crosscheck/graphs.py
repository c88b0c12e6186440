"""Relevance rules on torchvision's backbones (``weights=None``): call sites, conservation, summation, Zennit.

Runs in the torch 2.14.1 + torchvision environment of ``make crosscheck``. For resnet18, resnet50, vgg16_bn,
densenet121, mobilenet_v3_small, efficientnet_b0 and convnext_tiny (BatchNorm statistics randomised, inputs
64 px, batch 2) it runs every rule method, measures LRP conservation on bias-free copies (all biases,
BatchNorm means and shifts, LayerNorm shifts zero), the bias share on the real model and DeepLIFT's summation to
delta; then compares LRP with Zennit (EpsilonPlusFlat / EpsilonGammaBox with its ResNet / VGG canonizers) on
resnet18, resnet50 and vgg16_bn, and times LRP (resnet50, 224 px, batch 8) against Zennit and DeepLIFT against
Captum on the module-per-use twin of resnet50.

    python crosscheck/graphs.py [--quick] [--no-timing] [--json crosscheck/graphs.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import types
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")

import torch
from torch import nn

import attrkit as ak

warnings.filterwarnings("ignore")
TOL = 1e-4
MODELS = ["resnet18", "resnet50", "vgg16_bn", "densenet121", "mobilenet_v3_small", "efficientnet_b0",
          "convnext_tiny"]
METHODS = [("guided_backprop", {}), ("deconvnet", {}), ("lrp", {"composite": "epsilon_plus_flat"}),
           ("lrp", {"composite": "epsilon_gamma_box", "low": 0.0, "high": 1.0}), ("deeplift", {"baseline": 0.0}),
           ("deeplift_shap", {})]


def rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def build(name: str, seed: int = 0, bias_free: bool = False, dtype=torch.float32) -> nn.Module:
    import torchvision.models as tvm
    torch.manual_seed(seed)
    model = getattr(tvm, name)(weights=None)
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):      # fan-in init: torchvision's own (fan-out, std 0.01 heads)
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)   # leaves mobilenet_v3 / efficientnet
            if m.bias is not None:                                                # outputs constant to 1e-8
                nn.init.uniform_(m.bias, -0.1, 0.1, generator=g)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.running_mean.copy_(torch.zeros(c) if bias_free else torch.rand(c, generator=g) * 0.4 - 0.2)
            m.bias.data.copy_(torch.zeros(c) if bias_free else torch.rand(c, generator=g) * 0.4 - 0.2)
        elif bias_free and isinstance(getattr(m, "bias", None), nn.Parameter):
            m.bias.data.zero_()
    return model.to(dtype).eval()


# ------------------------------------------------------------------------------------ every method
def model_rows(size: int, n: int) -> list[dict]:
    rows = []
    for name in MODELS:
        model = build(name)
        x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            t = model(x).argmax(1)
        row = {"model": name, "methods": {}}
        for method, opts in METHODS:
            key = method if method != "lrp" else f"lrp {opts['composite']}"
            if method == "deeplift_shap":
                opts = {"baseline": torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(8))}
            t0 = time.perf_counter()
            try:
                a = ak.explain(model, x, method, target=t, **opts)
                ok = bool(torch.isfinite(a.values).all())
                entry = {"ok": ok, "seconds": round(time.perf_counter() - t0, 2), "binding": a.info.get("binding"),
                         "sites_with_rules": len(a.info.get("rules", {}))}
                if method == "lrp":
                    entry["bias_share"] = float((1 - a.info["relevance_sum"] / a.info["f_x"]).abs().max())
                    entry["canonized"] = len(a.info["canonized"])
                    entry["batchnorm_layers"] = len(a.info["batchnorm_layers"])
                if "completeness_gap" in a.info and method != "lrp":
                    gap = a.info["completeness_gap"]
                    delta = (a.info["f_x"] - a.info["f_baseline"]).abs()
                    entry["completeness_gap"] = float(gap.max())
                    scale = torch.maximum(a.info["f_x"].abs(), a.info["f_baseline"].abs()).clamp_min(1e-6)
                    entry["completeness_gap_rel"] = float((gap / scale).max())     # relative to the outputs
            except Exception as exc:          # noqa: BLE001 - recorded as a failure row
                entry = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            row["methods"][key] = entry
        # conservation on the bias-free copy
        free = build(name, bias_free=True)
        with torch.no_grad():
            tf = free(x).argmax(1)
        row["conservation"] = {}
        for label, opts in (("epsilon_plus_flat", {"composite": "epsilon_plus_flat"}),
                            ("epsilon_gamma_box", {"composite": "epsilon_gamma_box", "low": 0.0, "high": 1.0}),
                            ("epsilon_gamma_box, stabilisers 1e-9",
                             {"composite": "epsilon_gamma_box", "low": 0.0, "high": 1.0, "epsilon": 1e-9,
                              "stabilizer": 1e-9})):
            try:
                a = ak.explain(free, x, "lrp", target=tf, **opts)
                row["conservation"][label] = float((a.info["completeness_gap"] / a.info["f_x"].abs()).max())
            except Exception as exc:          # noqa: BLE001
                row["conservation"][label] = f"{type(exc).__name__}: {str(exc)[:200]}"
        # batch sizes 1 and 2 give the same DeepLIFT (max pooling included)
        try:
            one = ak.explain(model, x, "deeplift", baseline=0.0, target=t, batch_size=1).values
            two = ak.explain(model, x, "deeplift", baseline=0.0, target=t, batch_size=2).values
            row["deeplift_batch_1_vs_2"] = rel(one, two)
        except Exception as exc:              # noqa: BLE001
            row["deeplift_batch_1_vs_2"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def passed(row: dict) -> bool:
    m = row["methods"]
    ok = all(e.get("ok") for e in m.values())
    ok &= all(e.get("completeness_gap_rel", 0) < TOL for e in m.values())
    c = row["conservation"].get("epsilon_gamma_box, stabilisers 1e-9")
    ok &= isinstance(c, float) and c < TOL
    b = row["deeplift_batch_1_vs_2"]
    return bool(ok and isinstance(b, float) and b < 1e-4)


# ------------------------------------------------------------------------------------ Zennit
def zennit_rows(size: int) -> list[tuple]:
    """Default settings (float32), and matched settings: Zennit's Norm rule (sums, average pools) with the same
    tiny stabiliser as attrkit's exact proportional split, BatchNorm eps = 0 (Zennit's merged BatchNorm keeps
    scaling by 1/sqrt(1 + eps)), float64 (with a 1e-12 stabiliser float32 rounding decides the few z+ neurons
    whose positive contributions nearly vanish)."""
    from zennit import composites as zc
    from zennit.attribution import Gradient
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer
    rows = []
    for name, can in (("resnet18", ResNetCanonizer), ("resnet50", ResNetCanonizer), ("vgg16_bn", VGGCanonizer)):
        for matched in (False, True):
            dtype = torch.float64 if matched else torch.float32
            model = build(name, dtype=dtype)
            if matched:
                for m in model.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eps = 0.0
            s = 1e-12 if matched else 1e-6
            x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(9)).to(dtype)
            with torch.no_grad():
                out = model(x)
            t = out.argmax(1)
            onehot = torch.eye(out.shape[1], dtype=dtype)[t]
            low, high = torch.zeros_like(x[:1]), torch.ones_like(x[:1])
            for comp, opts, theirs_comp in (
                    ("epsilon_plus_flat", {}, lambda: zc.EpsilonPlusFlat(stabilizer=s, canonizers=[can()])),
                    ("epsilon_gamma_box", {"low": 0.0, "high": 1.0},
                     lambda: zc.EpsilonGammaBox(low=low, high=high, stabilizer=s, canonizers=[can()]))):
                ours = ak.explain(model, x, "lrp", composite=comp, target=t, stabilizer=s, **opts).values
                with Gradient(model=model, composite=theirs_comp()) as attributor:
                    _, theirs = attributor(x, lambda o: o * onehot)
                d = rel(ours, theirs)
                label = f"{name} {comp} ({'matched: stabilisers 1e-12, BN eps 0, float64' if matched else 'defaults, float32'})"
                rows.append(("zennit", label, d, d <= TOL if matched else None))
                print(f"  {label}: {d:.3e}", flush=True)
    return rows


# ------------------------------------------------------------------------------------ timm
def timm_rows(size: int) -> list[tuple]:
    """timm's regnetx_002: every BatchNormAct2d (F.batch_norm, then its activation) folded; conservation on the
    bias-free copy; DeepLIFT's gap. Skipped when timm is not installed."""
    try:
        import timm
    except ImportError:
        return []
    torch.manual_seed(0)
    model = timm.create_model("regnetx_002", pretrained=False).eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.running_mean.zero_()
            m.bias.data.zero_()
        elif isinstance(getattr(m, "bias", None), nn.Parameter):
            m.bias.data.zero_()
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        t = model(x).argmax(1)
    a = ak.explain(model, x, "lrp", composite="epsilon_gamma_box", low=0.0, high=1.0, epsilon=1e-9, stabilizer=1e-9,
                   target=t)
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    gap = float((a.info["completeness_gap"] / a.info["f_x"].abs()).max())
    d = ak.explain(model, x, "deeplift", target=t)
    dgap = float((d.info["completeness_gap"] / d.info["f_x"].abs().clamp_min(1e-6)).max())
    rows = [("timm", f"regnetx_002 BatchNormAct2d folded: {len(a.info['canonized'])} of {n_bn}; LRP conservation "
                     "(bias-free, gamma-box, stabilisers 1e-9)", gap, gap <= TOL and len(a.info["canonized"]) == n_bn),
            ("timm", "regnetx_002 DeepLIFT completeness gap (relative to f(x))", dgap, dgap <= TOL)]
    for r in rows:
        print(f"  {r[1]}: {r[2]:.3e}", flush=True)
    return rows


# ------------------------------------------------------------------------------------ Captum
def captum_rows(size: int) -> list[tuple]:
    """DeepLIFT and Guided Backprop on torchvision's resnet50 (one ReLU module reused per block) against Captum on
    its module-per-use twin. For DeepLIFT the stem max pool becomes an average pool in both: Captum 0.9 mixes the
    hooks of a ReLU feeding a MaxPool (its summation to delta breaks there; attrkit's does not)."""
    from captum.attr import DeepLift, GuidedBackprop
    rows = []
    model = build("resnet50")
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        t = model(x).argmax(1)
    twin = _per_use_twin(model)
    d = rel(ak.explain(model, x, "guided_backprop", target=t).values,
            GuidedBackprop(twin).attribute(x.clone(), target=t))
    rows.append(("captum", "guided_backprop resnet50 (reused ReLUs) vs GuidedBackprop on the twin", d, d <= TOL))
    model.maxpool = twin.maxpool = nn.AvgPool2d(3, 2, 1)
    base = torch.full_like(x, 0.25)
    ours = ak.explain(model, x, "deeplift", baseline=base, target=t)
    theirs, delta = DeepLift(twin).attribute(x.clone(), baselines=base, target=t, return_convergence_delta=True)
    d = rel(ours.values, theirs)
    rows.append(("captum", f"deeplift resnet50 (stem avg pool) vs DeepLift on the twin (gaps "
                 f"{float(ours.info['completeness_gap'].max()):.1e} / {float(delta.abs().max()):.1e})", d, d <= TOL))
    for r in rows:
        print(f"  {r[1]}: {r[2]:.3e}", flush=True)
    return rows


# ------------------------------------------------------------------------------------ timing
def _per_use_twin(model: nn.Module) -> nn.Module:
    """resnet50 with a ReLU module per call (Captum's hooks need one), the same weights."""
    from torchvision.models.resnet import Bottleneck
    twin = copy.deepcopy(model)
    twin.relu = nn.ReLU()
    for block in twin.modules():
        if isinstance(block, Bottleneck):
            block.relu1, block.relu2, block.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

            def forward(self, x):
                identity = x if self.downsample is None else self.downsample(x)
                out = self.relu1(self.bn1(self.conv1(x)))
                out = self.relu2(self.bn2(self.conv2(out)))
                return self.relu3(self.bn3(self.conv3(out)) + identity)
            block.forward = types.MethodType(forward, block)
    return twin.eval()


def _best(fn, repeats=2):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def resnet50_peers(size: int = 224, n: int = 8) -> types.SimpleNamespace:
    """The timed work on resnet50 (``size`` px, batch ``n``): ``model``, its module-per-use ``twin``, inputs
    ``x``, targets ``t`` (the predicted classes), the zero reference ``base``, and the four runs (no arguments):
    ``lrp`` / ``zennit`` (EpsilonPlusFlat, Zennit with its ResNet canonizer; it returns (output, relevance)) and
    ``deeplift`` / ``captum`` (DeepLift on the twin). Also used by ``benchmarks`` (workload W15)."""
    from captum.attr import DeepLift
    from zennit import composites as zc
    from zennit.attribution import Gradient
    from zennit.torchvision import ResNetCanonizer
    model = build("resnet50")
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        t = model(x).argmax(1)
    onehot = torch.eye(1000)[t]
    twin = _per_use_twin(model)
    base = torch.zeros_like(x)

    def zennit():
        with Gradient(model=model, composite=zc.EpsilonPlusFlat(canonizers=[ResNetCanonizer()])) as attributor:
            return attributor(x, lambda o: o * onehot)

    return types.SimpleNamespace(
        model=model, twin=twin, x=x, t=t, base=base, zennit=zennit,
        lrp=lambda: ak.explain(model, x, "lrp", composite="epsilon_plus_flat", target=t, batch_size=n,
                               progress=False),
        deeplift=lambda: ak.explain(model, x, "deeplift", baseline=0.0, target=t, batch_size=n, progress=False),
        captum=lambda: DeepLift(twin).attribute(x, baselines=base, target=t))


def timing_rows(size: int = 224, n: int = 8) -> list[tuple]:
    from captum.attr import DeepLift
    p = resnet50_peers(size, n)
    ours_a = p.deeplift()
    theirs_a, delta = DeepLift(p.twin).attribute(p.x, baselines=p.base, target=p.t, return_convergence_delta=True)
    same = rel(ours_a.values, theirs_a)
    gaps = (float(ours_a.info["completeness_gap"].max()), float(delta.abs().max()))
    rows = []
    for label, ours, theirs, peer, target in (("LRP EpsilonPlusFlat resnet50", p.lrp, p.zennit, "Zennit", 1.0),
                                              ("DeepLIFT resnet50 (Captum on the module-per-use twin)", p.deeplift,
                                               p.captum, "Captum", 0.8)):
        t_theirs, t_ours = _best(theirs), _best(ours)
        rows.append((label, size, n, t_ours, t_theirs, t_ours / t_theirs, target, peer))
    rows.append(("DeepLIFT resnet50 vs Captum twin: max rel diff (Captum 0.9 mixes the hooks of a ReLU feeding a "
                 "MaxPool, the stem here; completeness gaps attrkit / Captum: "
                 f"{gaps[0]:.2e} / {gaps[1]:.2e})", size, n, same, None, None, None, "Captum"))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="resnet18 and mobilenet_v3_small only, 32 px")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--json", help="write the results to this file")
    args = p.parse_args(argv)
    if args.quick:
        MODELS[:] = ["resnet18", "mobilenet_v3_small"]
    size = 32 if args.quick else 64
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, attrkit from {ak.__file__}")
    rows = model_rows(size, 2)
    ok = all(passed(r) for r in rows)
    print(f"\n{'model':<20} {'methods':>8} {'conservation (gamma-box, 1e-9)':>31} {'DeepLIFT gap rel':>17}  result")
    for r in rows:
        gaps = [e.get("completeness_gap_rel", 0) for e in r["methods"].values()]
        c = r["conservation"].get("epsilon_gamma_box, stabilisers 1e-9")
        n_ok = sum(bool(e.get("ok")) for e in r["methods"].values())
        print(f"{r['model']:<20} {n_ok:>4}/{len(r['methods']):<3} {c if isinstance(c, str) else f'{c:.2e}':>31} "
              f"{max(gaps):>17.2e}  {'PASS' if passed(r) else 'FAIL'}")
    zrows = (zennit_rows(size) + captum_rows(size) + timm_rows(size)) if not args.quick else []
    ok &= all(r[3] is not False for r in zrows)
    timings = [] if (args.quick or args.no_timing) else timing_rows()
    for label, sz, n, ours, theirs, ratio, target, peer in timings:
        if theirs is None:
            print(f"{label}: {ours:.2e}")
        else:
            print(f"{label}, {sz} px, batch {n}: attrkit {ours:.2f} s, {peer} {theirs:.2f} s, ratio {ratio:.2f} "
                  f"(target <= {target})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"models": rows, "zennit": [list(r) for r in zrows], "timings": [list(t) for t in timings],
                       "threads": torch.get_num_threads()}, f, indent=1)
    print("\ngraphs crosscheck:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
