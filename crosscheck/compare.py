"""Cross-check attrkit's relevance propagation and CAMs against Zennit and pytorch-grad-cam.

Runs in the torch 2.14.1 environment built by ``make crosscheck`` (both peers need torchvision, which does not
import beside the main environment's torch). Prints max relative differences, a pass/fail table, and the time
of Score-CAM / Ablation-CAM on 32 images of a VGG-style network against pytorch-grad-cam at equal batch size.

    python crosscheck/compare.py [--quick] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")    # pytorch-grad-cam prints a bar per image otherwise

import numpy as np
import torch
from torch import nn

import attrkit as ak

warnings.filterwarnings("ignore")
TOL = 1e-4


def rel(ours, theirs) -> float:
    a = torch.as_tensor(np.asarray(ours, dtype=np.float64) if not torch.is_tensor(ours) else ours).double()
    b = torch.as_tensor(np.asarray(theirs, dtype=np.float64) if not torch.is_tensor(theirs) else theirs).double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def bn_cnn(seed=0, classes=10):
    """Conv/BN/ReLU/MaxPool blocks, an average pool and a dense head; BN statistics randomised."""
    torch.manual_seed(seed)
    m = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(32 * 16, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, classes))
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


# ------------------------------------------------------------------------------------ Zennit
def zennit_rows(quick: bool):
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit import composites as zc
    from zennit import rules as zr
    from zennit.types import Convolution, Activation, AvgPool, BatchNorm

    model = bn_cnn()
    torch.manual_seed(1)
    x = torch.rand(4, 3, 32, 32) * 2 - 0.5          # inputs in [-0.5, 1.5]
    with torch.no_grad():
        out = model(x)
    t = out.argmax(1)
    onehot = torch.eye(out.shape[1])[t]
    low, high = torch.full_like(x[:1], -0.5), torch.full_like(x[:1], 1.5)

    def uniform(rule):
        base = [(Activation, zr.Pass()), (AvgPool, zr.Norm()), (BatchNorm, zr.Pass())]
        return zc.LayerMapComposite(base + [(Convolution, rule), (nn.Linear, rule)],
                                    canonizers=[SequentialMergeBatchNorm()])

    cases = [
        ("epsilon_plus", {"composite": "epsilon_plus"}, zc.EpsilonPlus(canonizers=[SequentialMergeBatchNorm()])),
        ("epsilon_plus_flat", {"composite": "epsilon_plus_flat"},
         zc.EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])),
        ("epsilon_alpha2_beta1", {"composite": "epsilon_alpha2_beta1"},
         zc.EpsilonAlpha2Beta1(canonizers=[SequentialMergeBatchNorm()])),
        ("epsilon_alpha2_beta1_flat", {"composite": "epsilon_alpha2_beta1_flat"},
         zc.EpsilonAlpha2Beta1Flat(canonizers=[SequentialMergeBatchNorm()])),
        ("epsilon_gamma_box", {"composite": "epsilon_gamma_box", "low": -0.5, "high": 1.5},
         zc.EpsilonGammaBox(low=low, high=high, canonizers=[SequentialMergeBatchNorm()])),
        ("rule=epsilon (0.01)", {"rule": "epsilon", "epsilon": 0.01}, uniform(zr.Epsilon(0.01))),
        ("rule=zplus", {"rule": "zplus"}, uniform(zr.ZPlus())),
        ("rule=alpha_beta (1, 0)", {"rule": "alpha_beta", "alpha": 1.0, "beta": 0.0},
         uniform(zr.AlphaBeta(1.0, 0.0))),
        ("rule=gamma (0.25)", {"rule": "gamma", "gamma": 0.25}, uniform(zr.Gamma(0.25))),
        ("first=wsquare + epsilon_plus", {"composite": "epsilon_plus", "first": "wsquare"},
         zc.SpecialFirstLayerMapComposite(
             [(Activation, zr.Pass()), (AvgPool, zr.Norm()), (BatchNorm, zr.Pass()),
              (Convolution, zr.ZPlus()), (nn.Linear, zr.Epsilon())],
             [(Convolution, zr.WSquare())], canonizers=[SequentialMergeBatchNorm()])),
    ]
    rows = []
    for name, opts, comp in cases:
        ours = ak.explain(model, x, "lrp", target=t, **opts).values
        with Gradient(model=model, composite=comp) as attributor:
            _, theirs = attributor(x, lambda o: o * onehot)     # relevance at the output = target score
        d = rel(ours, theirs)
        rows.append(("zennit", f"lrp {name}", d, d <= TOL))
    with torch.no_grad():
        after = model(x)
    rows.append(("zennit", "model unchanged after the calls (max |diff|)", float((after - out).abs().max()),
                 bool(torch.equal(after, out))))
    return rows


# --------------------------------------------------------------------------- pytorch-grad-cam
def vgg_model(quick: bool):
    from attrkit.models import vgg
    return vgg("vgg11", num_classes=10, in_size=64 if quick else 128, width=0.25, fc_width=256, seed=0).eval()


def gradcam_rows(quick: bool):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = vgg_model(quick)
    size = 64 if quick else 128
    torch.manual_seed(2)
    x = torch.rand(4, 3, size, size)
    t = model(x).argmax(1)
    targets = [ClassifierOutputTarget(int(c)) for c in t]
    layer_name = model.last_conv
    layer = dict(model.named_modules())[layer_name]

    def post(raw):   # pytorch-grad-cam's finish: relu, min-max, resize; then its layer aggregation re-scales
        per_layer = scale_cam_image(np.maximum(raw[:, 0].detach().numpy(), 0), (size, size))
        return scale_cam_image(np.maximum(per_layer, 0))

    rows = []
    for ours_name, cls in [("grad_cam", pgc.GradCAM), ("grad_cam_pp", pgc.GradCAMPlusPlus),
                           ("layer_cam", pgc.LayerCAM), ("xgrad_cam", pgc.XGradCAM), ("hires_cam", pgc.HiResCAM),
                           ("score_cam", pgc.ScoreCAM), ("ablation_cam", pgc.AblationCAM),
                           ("eigen_cam", pgc.EigenCAM)]:
        cam = cls(model=model, target_layers=[layer])
        if ours_name == "score_cam":
            cam.batch_size = 32
        theirs = cam(input_tensor=x, targets=targets)
        raw = ak.explain(model, x, ours_name, target=t, layer=layer_name, relu=False, batch_size=32).values
        if ours_name == "eigen_cam":     # SVD sign is arbitrary: pytorch-grad-cam does not fix it, we do
            d = min(rel(post(raw), theirs), rel(post(-raw), theirs))
            name = "eigen_cam (up to sign)"
        else:
            d = rel(post(raw), theirs)
            name = ours_name
        rows.append(("pytorch-grad-cam", name, d, d <= TOL))
        del cam
    return rows


def timing_rows(quick: bool, repeats: int = 2):
    """Wall time of 32 images (8 with --quick) at 64 px, both libraries at batch size 32, runs alternated
    (theirs, ours, ours, theirs, ...) and the fastest run of each kept (the machine may be shared)."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from attrkit.models import vgg

    model = vgg("vgg11", num_classes=10, in_size=64, width=0.25, fc_width=256, seed=0).eval()
    n, bs = (8 if quick else 32), 32
    torch.manual_seed(3)
    x = torch.rand(n, 3, 64, 64)
    t = model(x).argmax(1)
    targets = [ClassifierOutputTarget(int(c)) for c in t]
    layer = dict(model.named_modules())[model.last_conv]
    out = []
    for ours_name, cls in [("score_cam", pgc.ScoreCAM), ("ablation_cam", pgc.AblationCAM)]:
        def theirs_run():
            cam = cls(model=model, target_layers=[layer], **({"batch_size": bs} if cls is pgc.AblationCAM else {}))
            cam.batch_size = bs
            t0 = time.perf_counter()
            cam(input_tensor=x, targets=targets)
            return time.perf_counter() - t0

        info = {}

        def ours_run():
            t0 = time.perf_counter()
            a = ak.explain(model, x, ours_name, target=t, layer=model.last_conv, batch_size=bs)
            info.update({k: a.info[k] for k in ("constant_channels", "split") if k in a.info})
            return time.perf_counter() - t0

        theirs, ours = [], []
        for r in range(repeats):
            order = (theirs_run, ours_run) if r % 2 == 0 else (ours_run, theirs_run)
            for fn in order:
                (theirs if fn is theirs_run else ours).append(fn())
        out.append((ours_name, n, bs, min(ours), min(theirs), min(ours) / min(theirs), info))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller inputs and 8 images for the timing")
    p.add_argument("--json", help="write the results to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"torch {torch.__version__}, attrkit from {ak.__file__}")
    rows = zennit_rows(args.quick) + gradcam_rows(args.quick)
    width = max(len(r[1]) for r in rows)
    print(f"\n{'peer':<17} {'comparison':<{width}}  {'max rel diff':>12}  result")
    for peer, name, d, ok in rows:
        print(f"{peer:<17} {name:<{width}}  {d:12.3e}  {'PASS' if ok else 'FAIL'}")
    print("(Zennit differences of ~1e-5 are Zennit's own: its Norm rule on average pooling adds a 1e-6 stabilizer, "
          "and its BatchNorm merge leaves eps in the identity BatchNorm, scaling outputs by 1/sqrt(1 + eps); on a "
          "model without pooling or BatchNorm the two agree to 1e-16 in float64.)")
    timings = timing_rows(args.quick)
    print(f"\nCAM timing on a VGG11/4 network (64 px), equal batch size, fastest of alternated runs "
          f"(target ratio <= 1.0):")
    print(f"{'method':<13} {'images':>6} {'batch':>5} {'attrkit s':>10} {'pytorch-grad-cam s':>19} {'ratio':>6}")
    for name, n, bs, ours, theirs, ratio, extra in timings:
        print(f"{name:<13} {n:>6} {bs:>5} {ours:>10.2f} {theirs:>19.2f} {ratio:>6.3f}   {extra}")
    ok = all(r[3] for r in rows) and all(t[5] <= 1.0 for t in timings)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": [list(r) for r in rows], "timings": [list(t) for t in timings]}, f, indent=1)
    print("\ncrosscheck:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
