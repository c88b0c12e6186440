"""Integer inputs (token ids): never cast, gradient methods at the embedding (vs Captum's LayerIntegratedGradients),
token-id / pad / embedding-vector references, games over tokens and word spans (vs Captum with feature masks),
clear refusals, and the registry contract on a token model."""
import math

import pytest
import torch
from torch import nn

import attrkit as ak
from attrkit.core.modules import count_hooks
from attrkit.core.tokens import find_embedding

captum_attr = pytest.importorskip("captum.attr", reason="captum is a test dependency (pip install attrkit[test])")

V, L, D, PAD = 30, 9, 8, 1


class TokenCNN(nn.Module):
    """token + position embeddings, a Conv1d over the sequence, ReLU, mean over positions, a linear head."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.tok = nn.Embedding(V, D)
        self.pos = nn.Embedding(L, D)
        self.conv = nn.Conv1d(D, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(6, 3)

    def embed(self, e):                                         # the model from the embedding on
        e = e + self.pos(torch.arange(e.shape[1], device=e.device)).unsqueeze(0)
        return self.head(self.relu(self.conv(e.transpose(1, 2))).mean(2))

    def forward(self, ids):
        return self.embed(self.tok(ids))


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, V, (3, L), generator=g)
    ids[2, -3:] = PAD
    return TokenCNN().eval().double(), ids, torch.tensor([0, 2, 1])


def close(a, b, tol=1e-4):
    a, b = torch.as_tensor(a).detach().double(), torch.as_tensor(b).detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) < tol


# --------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("steps", [8, 33])
def test_ig_at_embedding_matches_captum_layer_ig(setup, steps):
    model, ids, t = setup
    a = ak.explain(model, ids, "integrated_gradients", target=t, steps=steps, baseline="pad", pad_id=PAD)
    assert a.inputs.dtype == torch.long and a.layer == "tok" and a.values.shape == ids.shape
    lig = captum_attr.LayerIntegratedGradients(model, model.tok)
    theirs = lig.attribute(ids, baselines=torch.full_like(ids, PAD), target=t, n_steps=steps, method="gausslegendre")
    assert close(a.info["embedding_values"], theirs)                  # per dimension [N, L, D]
    assert close(a.values, theirs.sum(-1))                            # per token: sum over the embedding dim
    assert "sum over the embedding dimension" in a.info["token_scores"]
    assert torch.equal(a.baseline, torch.full_like(ids, PAD))


def test_ig_default_reference_is_token_zero_and_layer_override(setup):
    model, ids, t = setup
    a = ak.explain(model, ids, "integrated_gradients", target=t, steps=16)
    theirs = captum_attr.LayerIntegratedGradients(model, model.tok).attribute(
        ids, baselines=0, target=t, n_steps=16, method="gausslegendre")
    assert close(a.values, theirs.sum(-1))
    assert "token id 0" in a.info["reference"] and "automatic" in a.info["layer_chosen"]
    b = ak.explain(model, ids, "integrated_gradients", target=t, steps=16, layer="tok")
    assert torch.equal(a.values, b.values)
    c = ak.explain(model, ids.int(), "integrated_gradients", target=t, steps=16)      # int32 ids: not cast either
    assert c.inputs.dtype == torch.int32 and torch.equal(c.values, a.values)
    # the completeness gap is that of the per-token scores: |sum - (f(x) - f(all token 0))|
    ref = model(torch.zeros_like(ids)).detach()[torch.arange(3), t]
    gap = (a.values.sum(1) - (a.outputs[torch.arange(3), t] - ref)).abs()
    assert close(a.info["completeness_gap"], gap, tol=1e-6)


def test_gradient_and_propagation_methods_at_embedding_match_captum(setup):
    model, ids, t = setup
    emb = model.tok(ids).detach()
    sal = ak.explain(model, ids, "saliency", target=t)
    theirs = captum_attr.LayerGradientXActivation(model, model.tok, multiply_by_inputs=False).attribute(ids, target=t)
    assert close(sal.info["embedding_values"], theirs)
    ixg = ak.explain(model, ids, "input_x_gradient", target=t)
    assert close(ixg.values, (theirs * emb).sum(-1))
    dl = ak.explain(model, ids, "deeplift", target=t, baseline="pad", pad_id=PAD)
    ref_emb = model.tok(torch.full_like(ids, PAD)).detach()
    theirs_dl = captum_attr.DeepLift(_FromEmbedding(model)).attribute(emb, baselines=ref_emb, target=t)
    assert close(dl.info["embedding_values"], theirs_dl)


class _FromEmbedding(nn.Module):
    """The token model as a function of its token embeddings (Captum's view for DeepLift / IG on vectors)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, e):
        return self.model.embed(e)


def test_embedding_vector_reference(setup):
    model, ids, t = setup
    v = torch.randn(D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a = ak.explain(model, ids, "integrated_gradients", target=t, steps=16, baseline=v)
    emb = model.tok(ids).detach()
    theirs = captum_attr.IntegratedGradients(_FromEmbedding(model)).attribute(
        emb, baselines=v.expand_as(emb).contiguous(), target=t, n_steps=16, method="gausslegendre")
    assert close(a.info["embedding_values"], theirs)
    f_ref = model.embed(v.expand_as(emb)).detach()[torch.arange(3), t]
    assert close(a.info["f_baseline"], f_ref, tol=1e-10)
    assert a.baseline.shape == emb.shape and torch.equal(a.baseline[1, 4], v)
    assert count_hooks(model) == 0
    # per-position vectors [L, D], and the same reference in a game: the empty coalition is all vectors
    vl = torch.randn(L, D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ks = ak.explain(model, ids, "kernel_shap", target=t, baseline=vl, n_samples=64, seed=0)
    assert close(ks.info["base_value"], model.embed(vl.expand_as(emb)).detach()[torch.arange(3), t], tol=1e-10)
    with pytest.raises(ValueError, match="embedding size 8"):
        ak.explain(model, ids, "integrated_gradients", baseline=torch.zeros(5, dtype=torch.float64))


# --------------------------------------------------------------------------------------------- finding the embedding
class TwoTables(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.fc = nn.Embedding(V, 4), nn.Embedding(V, 4), nn.Linear(4, 2)

    def forward(self, ids):
        return self.fc((self.a(ids) + self.b(ids)).mean(1))


def test_embedding_found_by_the_tensor_it_reads(setup):
    model, ids, _ = setup
    assert find_embedding(model, ids)[0] == "tok"          # not 'pos', which reads positions
    m2 = TwoTables().eval()
    with pytest.raises(ValueError, match="several nn.Embedding layers read the integer input: a, b"):
        ak.explain(m2, ids, "saliency")
    assert ak.explain(m2, ids, "saliency", layer="b").layer == "b"


def test_integer_inputs_without_embedding_are_refused_clearly():
    codes = torch.randint(0, 4, (2, 5))

    class Casts(nn.Module):             # reads category codes as numbers itself
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 2)

        def forward(self, x):
            return self.fc(x.float())

    with pytest.raises(ValueError, match="no nn.Embedding"):
        ak.explain(Casts(), codes, "integrated_gradients")
    assert ak.explain(Casts(), codes, "feature_ablation", target=1).values.shape == (2, 5)   # games work
    with pytest.raises(TypeError, match=r"x\.float\(\)"):       # a float model given ints: not cast, told why
        ak.explain(nn.Linear(5, 2), codes, "occlusion")


def test_noise_methods_and_float_references_refused(setup):
    model, ids, t = setup
    for kw in ({"method": "gradient_shap"}, {"method": "smoothgrad"}, {"method": "saliency", "noise": True}):
        with pytest.raises(ValueError, match="token ids cannot take"):
            ak.explain(model, ids, target=t, **kw)
    with pytest.raises(ValueError, match="cannot be averaged"):
        ak.explain(model, ids, "kernel_shap", masker="mean")
    with pytest.raises(ValueError, match="token id"):
        ak.explain(model, ids, "occlusion", baseline=2.5)
    with pytest.raises(ValueError, match="pad_id"):
        ak.explain(model, ids, "integrated_gradients", baseline="pad")
    with pytest.raises(ValueError, match="not ids"):
        ak.explain(nn.Linear(L, 2), ids.float(), "integrated_gradients", baseline="pad", pad_id=0)


# --------------------------------------------------------------------------------------------- games over tokens
class AllCoalitionsKernelShap(captum_attr.KernelShap):
    """Captum's KernelShap fed every coalition once, weighted by the Shapley kernel."""

    def kernel_shap_perturb_generator(self, original_inp, **kwargs):
        m = kwargs["num_interp_features"]
        for code in range(1 << m):
            yield ((code >> torch.arange(m)) & 1).view(1, -1).long()

    def kernel_shap_similarity_kernel(self, _, __, z, **kwargs):
        m, k = kwargs["num_interp_features"], int(z.sum())
        if k in (0, m):
            return torch.tensor([self.inf_weight])
        return torch.tensor([(m - 1) / (math.comb(m, k) * k * (m - k))])


def test_kernel_shap_over_word_spans_matches_captum(setup):
    model, ids, t = setup
    words = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4])         # 5 words over 9 tokens
    for i in range(2):
        ours = ak.explain(model, ids[i:i + 1], "kernel_shap", target=int(t[i]), players=words, baseline="pad",
                          pad_id=PAD, n_samples=30, spread="paint")
        assert ours.info["exact"] is True
        theirs = AllCoalitionsKernelShap(model).attribute(ids[i:i + 1], baselines=PAD, target=int(t[i]),
                                                          feature_mask=words.view(1, -1), n_samples=32)
        assert close(ours.values, theirs)
        assert ours.players.tolist() == [words.tolist()]


def test_occlusion_and_feature_ablation_over_tokens_match_captum(setup):
    model, ids, t = setup
    ours = ak.explain(model, ids, "occlusion", target=t, window=2, stride=1, baseline="pad", pad_id=PAD)
    theirs = captum_attr.Occlusion(model).attribute(ids, sliding_window_shapes=(2,), strides=1, baselines=PAD,
                                                    target=t)
    assert ours.values.dtype == torch.float64 and close(ours.values, theirs)
    fa = ak.explain(model, ids, "feature_ablation", target=t, baseline=PAD)        # one player per token
    theirs_fa = captum_attr.FeatureAblation(model).attribute(ids, baselines=PAD, target=t)
    assert close(fa.values, theirs_fa)


def test_games_on_tokens_are_efficient_and_substitute_ids(setup):
    model, ids, t = setup
    ex = ak.explain(model, ids[:1], "shapley", target=int(t[0]), baseline=PAD)    # 9 tokens: exact
    empty = model(torch.full_like(ids[:1], PAD))[0, int(t[0])].item()
    assert abs(ex.info["base_value"].item() - empty) < 1e-10
    assert abs(ex.values.sum().item() - (ex.outputs[0, int(t[0])].item() - empty)) < 1e-10
    li = ak.explain(model, ids, "lime", target=t, baseline=PAD, n_samples=64, seed=0)
    assert li.values.shape == ids.shape and torch.isfinite(li.values).all()


# --------------------------------------------------------------------------------------------- registry contract
def _token_options(spec):
    import inspect
    params = inspect.signature(spec.fn).parameters
    opts = {}
    if "n_samples" in params:      # games: 9 players; with 16 coalitions KernelSHAP's regression is rank deficient
        opts["n_samples"] = 64 if spec.players else 4
    if "steps" in params:
        opts["steps"] = 4
    if spec.sampled:
        opts["seed"] = 0
    return opts


@pytest.mark.parametrize("name", sorted(ak.methods()))
def test_contract_on_a_token_model(setup, name):
    """Every method either works on token ids (batch-size invariant, hooks removed, finite, per-sample targets
    equal single-sample runs) or refuses with a ValueError/TypeError that says so."""
    model, ids, _ = setup
    spec = ak.methods()[name]
    opts = _token_options(spec)
    targets = [0, 2, 1]
    try:
        runs = [ak.explain(model, ids, name, target=targets, batch_size=b, **opts) for b in (1, 3)]
    except (ValueError, TypeError) as e:
        assert count_hooks(model) == 0
        assert any(w in str(e) for w in ("token", "integer", "inputs [N, C")), f"{name}: unclear refusal: {e}"
        return
    assert count_hooks(model) == 0
    assert torch.isfinite(runs[0].values).all() and runs[0].values.is_floating_point()
    assert close(runs[1].values, runs[0].values, 1e-6), f"{name}: batch size changes the result"
    if spec.family in ("gradient", "propagation", "game"):
        assert runs[0].values.shape == ids.shape
    if not spec.sampled:
        one = ak.explain(model, ids[1:2], name, target=2, **opts)
        assert close(one.values[0], runs[0].values[1], 1e-6)


# --------------------------------------------------------------------------------------------- padding / fixed positions
def test_padding_tokens_are_no_players(setup):
    model, ids, t = setup                    # sample 2 ends in 3 pad tokens
    ex = ak.explain(model, ids, "shapley", target=t, baseline="pad", pad_id=PAD)        # padding excluded
    assert "3 padding positions (the pad id) are no players" in ex.info["players"]
    assert ex.players[2, -3:].tolist() == [-1, -1, -1] and int(ex.info["n_players"][2]) == 6
    assert torch.equal(ex.values[2, -3:], torch.zeros(3, dtype=ex.values.dtype))
    # pad -> pad changes nothing, so as players they would be dummies: the other values are the same
    every = ak.explain(model, ids, "shapley", target=t, baseline=PAD, players=torch.arange(L))
    assert close(every.values, ex.values, 1e-9) and float(every.values[2, -3:].abs().max()) < 1e-12
    # KernelSHAP spends nothing on padding: with 6 real tokens 62 coalitions are every coalition (exact)
    ks = ak.explain(model, ids[2:], "kernel_shap", target=1, baseline="pad", pad_id=PAD, n_samples=62)
    assert ks.info["exact"] is True and close(ks.values, ex.values[2:], 1e-9)


def test_minus_one_players_are_kept_in_any_game():
    """Closed form on a linear model: Shapley = w * (x - r) for players, 0 at positions labelled -1 (kept)."""
    torch.manual_seed(0)
    lin = nn.Linear(6, 1)
    x = torch.randn(2, 6)
    players = torch.tensor([[0, 1, -1, 2, -1, 3], [0, 0, 1, 1, 2, -1]])
    a = ak.explain(lin, x, "shapley", players=players, spread="paint")
    w = lin.weight.detach()[0]
    expect = w * x[0]
    expect[[2, 4]] = 0
    assert close(a.values[0], expect, 1e-6)
    grouped = torch.stack([(w[:2] * x[1, :2]).sum(), (w[2:4] * x[1, 2:4]).sum(), w[4] * x[1, 4]])
    assert close(a.values[1], torch.cat([grouped.repeat_interleave(2)[:4], grouped[2:], torch.zeros(1)]), 1e-6)
    assert a.players[0].tolist() == [0, 1, -1, 2, -1, 3]
    with pytest.raises(ValueError, match="-1 for positions that are no player"):
        ak.explain(lin, x, "shapley", players=torch.tensor([0, 1, -2, 2, 3, 4]))


# --------------------------------------------------------------------------------------------- results section
def test_token_scores_closed_forms_and_section_rewrite(tmp_path):
    from attrkit.experiments import Table
    from attrkit.experiments.text import END, START, token_scores, write_section
    values = torch.tensor([[3.0, 1.0, 2.0, -1.0, 9.0], [0.0, 2.0, 2.0, 1.0, 0.0]])
    rationale = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0]]).bool()
    real = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]).bool()         # sample 0: the 9 is padding
    s = token_scores(values, rationale, real)
    # sample 0: evidence {3, 2} vs {1, -1}: AUC 1, top token 3 is evidence, mass 5/6;
    # sample 1: evidence {2} vs {0, 2, 1, 0}: AUC (3 + 0.5) / 4, tied top (2, 2) half on evidence, mass 2/5
    assert s["rationale_auc"] == pytest.approx((1 + 3.5 / 4) / 2)
    assert s["pointing_game"] == pytest.approx((1 + 0.5) / 2)
    assert s["relevance_mass"] == pytest.approx((5 / 6 + 2 / 5) / 2)
    path = tmp_path / "results.md"
    path.write_text("# results\n\nother sections\n")
    t = Table([{"method": "m", "rationale_auc": 0.9}], name="text_rationale", title="T", seconds=1.0)
    write_section(t, path)
    write_section(t, path)                                   # rerunnable: replaced, not appended twice
    text = path.read_text()
    assert text.startswith("# results\n\nother sections\n") and text.count(START) == 1 and text.rstrip().endswith(END)
