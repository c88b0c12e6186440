"""transformers.readout.prune_rows: the head after a ViT block computes only the class-token row it reads."""
import torch
from torch import fx, nn

from attrkit.core.split import head_after
from attrkit.core.trace import traced
from attrkit.models.vit import SmallViT
from attrkit.transformers.readout import prune_rows


def _head(model, layer):
    gm = traced(model, (model.get_submodule(layer),))
    hit = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == layer][0]
    return head_after(gm, hit, [], None)


def _queries(head, a):
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
             for m in head.modules() if isinstance(m, nn.MultiheadAttention)]
    with torch.no_grad():
        out = head(a)
    for h in hooks:
        h.remove()
    return out, seen


def test_the_last_block_runs_one_query_and_the_outputs_agree():
    model = SmallViT(depth=3, seed=0).eval()                     # 64 patches + class token
    head = _head(model, "blocks.0")
    a = torch.randn(5, 65, 48, generator=torch.Generator().manual_seed(0))
    pruned = prune_rows(head, a[:2])
    assert pruned is not head and pruned.pruned_rows > 0
    full, q_full = _queries(head, a)
    out, q = _queries(pruned, a)
    assert q_full == [65, 65] and q == [65, 1]                   # block 1 still needs every row, block 2 only one
    assert torch.allclose(out, full, atol=1e-5, rtol=1e-5)


def test_a_head_reading_every_row_is_left_alone():
    model = SmallViT(depth=2, pool="mean", seed=0).eval()        # mean over tokens: every row matters
    head = _head(model, "blocks.0")
    assert prune_rows(head, torch.randn(2, 64, 48)) is head


def test_an_unknown_op_takes_the_selection_at_its_output():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, t):
            t = torch.cumsum(self.lin(t), 1)                     # mixes rows: may not be pushed through
            return torch.relu(t)[:, 0]
    model = Odd().eval()
    head = fx.symbolic_trace(model)
    a = torch.randn(3, 6, 8)
    pruned = prune_rows(head, a[:2])
    with torch.no_grad():
        assert torch.allclose(pruned(a), model(a), atol=1e-6)
    assert pruned.pruned_rows == 1                               # relu on one row; cumsum stays whole
    cums = [n for n in pruned.graph.nodes if n.target is torch.cumsum]
    assert len(cums) == 1 and cums[0].args[0].op == "call_module"


def test_the_split_is_traced_once_per_model_layer_and_structure(monkeypatch):
    """Layer games keep the traced (and row-pruned) head per model, layer and row shape; the output check still
    runs every call; a model whose modules changed is traced again."""
    import attrkit as ak
    from attrkit.core import split
    model = SmallViT(depth=2, seed=0).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    graphs, orig = [], split._trace
    monkeypatch.setattr(split, "_trace", lambda *a: (graphs.append(1), orig(*a))[1])
    run = lambda: ak.explain(model, x, "kernel_shap", target=0, n_samples=200, seed=0, layer="blocks.0",
                             progress=False)
    a, b = run(), run()
    assert len(graphs) == 1 and a.info["head_only"] and torch.equal(a.values, b.values)
    model.blocks[1].fc2 = nn.Linear(96, 48)
    c = run()
    assert len(graphs) == 2 and c.info["head_only"] and not torch.equal(a.values, c.values)
