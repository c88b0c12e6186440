"""Token layers and the automatic CAM layer on real architectures (torchvision, timm; random weights).

1. The automatic layer each architecture gets (``info["layer_choice"]``), against the usual choice.
2. CAMs at ViT / DeiT token layers and at a Swin channels-last layer, read without a reshape function, against
   pytorch-grad-cam with its documented ``reshape_transform`` (its finish — relu, min-max, resize — applied to ours).

    python crosscheck/layers.py [--quick] [--json out.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import torch

import attrkit as ak

warnings.filterwarnings("ignore")
TOL = 1e-5


def rel(a, b) -> float:
    a, b = torch.as_tensor(np.asarray(a, dtype=np.float64)), torch.as_tensor(np.asarray(b, dtype=np.float64))
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def models(quick: bool):
    import timm
    import torchvision.models as tv
    torch.manual_seed(0)            # random weights, the same every run
    out = [("torchvision resnet18", tv.resnet18(weights=None), "layer4"),
           ("torchvision vgg11_bn", tv.vgg11_bn(weights=None), "features.27"),
           ("torchvision swin_t", tv.swin_t(weights=None), "norm"),
           ("timm vit_tiny_patch16_224", timm.create_model("vit_tiny_patch16_224", pretrained=False), "blocks.10"),
           ("timm convnext_atto", timm.create_model("convnext_atto", pretrained=False), "stages.3")]
    if not quick:
        out += [("torchvision densenet121", tv.densenet121(weights=None), "features.norm5"),
                ("timm deit_tiny_distilled_patch16_224",
                 timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False), "blocks.10")]
    return out


def layer_rows(quick: bool):
    rows = []
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for name, model, usual in models(quick):
        model.eval()
        a = ak.explain(model, x, "grad_cam", target=0)
        ok = a.layer == usual or a.layer.startswith(usual + ".")      # a module inside giving the same tensor
        print(f"{name:40s} -> {a.layer:20s} usual: {usual:16s} {'ok' if ok else 'DIFFERENT'}\n    {a.info['layer_choice']}")
        rows.append({"model": name, "layer": a.layer, "usual": usual, "why": a.info["layer_choice"], "ok": ok})
    return rows


def cam_rows(quick: bool):
    import pytorch_grad_cam as pgc
    import timm
    import torchvision.models as tv
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def vit_reshape(prefix):
        def fn(t):          # pytorch-grad-cam's documented ViT reshape_transform, with the prefix of the model
            r = t[:, prefix:, :].reshape(t.size(0), 14, 14, t.size(2))
            return r.transpose(2, 3).transpose(1, 2)
        return fn

    swin_reshape = lambda t: t.permute(0, 3, 1, 2)
    torch.manual_seed(0)            # random weights, the same every run
    cases = [("vit_tiny", timm.create_model("vit_tiny_patch16_224", pretrained=False).eval(), "blocks.11.norm1", 1)]
    if not quick:
        cases += [("deit_tiny_distilled", timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
                   .eval(), "blocks.11.norm1", 2),
                  ("swin_t (torchvision)", tv.swin_t(weights=None).eval(), "features.7.1.norm1", None)]
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))

    def post(raw):
        per = scale_cam_image(np.maximum(raw[:, 0].detach().numpy(), 0), (224, 224))
        return scale_cam_image(np.maximum(per, 0))

    rows = []
    for tag, model, layer, prefix in cases:
        t = model(x)
        t = (t[0] if isinstance(t, tuple) else t).argmax(1)
        targets = [ClassifierOutputTarget(int(c)) for c in t]
        for ours, cls in [("grad_cam", pgc.GradCAM), ("grad_cam_pp", pgc.GradCAMPlusPlus), ("hires_cam", pgc.HiResCAM),
                          ("layer_cam", pgc.LayerCAM), ("xgrad_cam", pgc.XGradCAM)]:
            # XGrad-CAM divides by each channel's activation sum, and after a LayerNorm these sums cancel (swin_t's
            # norm1: 0.0018 from 49 terms of ~0.8), so float32 summation order alone moved the map by 3e-5 to 6e-5
            # on some random draws; in float64 the maps agree to the float32 of pytorch-grad-cam's finish (0 here):
            # that row runs in float64 on both sides
            m, xx = (copy.deepcopy(model).double(), x.double()) if ours == "xgrad_cam" else (model, x)
            cam = cls(model=m, target_layers=[m.get_submodule(layer)],
                      reshape_transform=swin_reshape if prefix is None else vit_reshape(prefix))
            theirs = cam(input_tensor=xx, targets=targets)
            a = ak.explain(m, xx, ours, target=t, layer=layer, relu=False)
            d = rel(post(a.values), theirs)
            dtype = str(xx.dtype).replace("torch.", "")
            print(f"{tag:22s} {ours:12s} at {layer} ({dtype}): rel diff {d:.2e} {'ok' if d <= TOL else 'FAIL'}   "
                  f"({a.info.get('layer_grid', '')})")
            rows.append({"model": tag, "method": ours, "layer": layer, "dtype": dtype, "rel": d, "ok": d <= TOL})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    res = {"layers": layer_rows(args.quick), "cams": cam_rows(args.quick)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    bad = [r for r in res["cams"] if not r["ok"]] + [r for r in res["layers"] if not r["ok"]]
    print(f"\n{len(bad)} row(s) not ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
