"""Memory stays bounded by the chunk budget however many IG steps are asked (peak RSS, own subprocess)."""
import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, resource, sys, torch
    from torch import nn
    import attrkit as ak
    torch.manual_seed(0)
    cfg = [4, 'M', 8, 'M', 16, 16, 'M', 32, 32, 'M', 32, 32, 'M']   # VGG11 layout, widths / 16
    layers, c = [], 3
    for v in cfg:
        if v == 'M':
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)).eval()
    x = torch.rand(1, 3, 224, 224)
    steps = int(sys.argv[1])
    a = ak.explain(model, x, "integrated_gradients", target=3, steps=steps)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"rss": rss, "gap": float(a.info["relative_gap"][0]), "n_evals": a.info["n_evals"]}))
""")


def run(steps: int) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(steps)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ig_512_steps_on_vgg_style_224_stays_under_3_gb():
    small, big = run(64), run(512)
    assert big["n_evals"] >= 512
    assert big["rss"] < 3 * 1024 ** 3, f"peak RSS {big['rss'] / 1e9:.2f} GB"
    # 8x the steps costs (almost) no extra memory: points are generated and reduced chunk by chunk
    assert big["rss"] < small["rss"] + 300 * 1024 ** 2, (small["rss"], big["rss"])
