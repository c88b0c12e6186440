"""The small ViT model and the ViT class-specificity table (on an untrained model: the table's mechanics)."""
import torch

from attrkit.models import SmallViT, build


def test_small_vit_builds_and_reads_its_grid():
    m = SmallViT(3, 5, 32, 8, 16, 2, 2, 32, seed=0).eval()
    again = build(m.config)
    assert type(again).__name__ == "SmallViT" and again.config == m.config
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(again(x), m(x))
    import attrkit as ak
    a = ak.explain(m, x, "grad_cam", target=1)
    assert a.layer == "blocks.0" and a.values.shape == (2, 1, 4, 4)      # the class-token readout skips block 1


def test_vit_specificity_table_rows():
    from attrkit.experiments.vit import METHODS, section_markdown, vit_specificity_table
    net = SmallViT(3, 5, 64, 8, 16, 2, 2, 32, seed=0).eval()
    t = vit_specificity_table(n=2, net=net)
    labels = [(r["method"].split(" ")[0], r["level"]) for r in t]
    assert ("random", "pixel") in labels and len(t) == len(METHODS) + 1
    assert ("grad_cam", "token") in labels and ("attention_rollout", "attention") in labels
    assert t.settings["token_layer"] == "blocks.0"
    rollout = [r for r in t if r["method"] == "attention_rollout"][0]
    assert rollout["rank_corr_ab"] > 0.999                      # class-agnostic: the same map for A and B
    md = section_markdown(t)
    assert md.startswith("<!-- vit-specificity:start -->") and "| grad_cam | token |" in md


def test_vit_sanity_table_rows():
    from attrkit.experiments.vit import SANITY, vit_sanity_table
    net = SmallViT(3, 5, 64, 8, 16, 2, 2, 32, seed=0).eval()
    t = vit_sanity_table(n=2, net=net)
    assert [r["method"] for r in t] == [m for m, _ in SANITY]
    rollout = [r for r in t if r["method"] == "attention_rollout"][0]
    assert rollout["after_head"] > 0.999            # rollout never reads the head: randomising it changes nothing
    assert all(r["after_all"] < 0.999 for r in t)   # every map depends on some weight
