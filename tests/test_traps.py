"""Traps of issue 14: inputs and models that used to give silent wrong or non-finite answers, or obscure errors.

Each test failed on the code before its fix (see the issue): in-place activations after a tapped layer,
non-finite baselines and model values, players of shape [C, H, W] with N == C, position-dependent noise,
Shapley sampling budgets below one permutation, bool/nested/numpy targets, compiled models, bad batch sizes,
unaffordable exact Shapley, wrong-rank inputs.
"""
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import attrkit as ak


# ----------------------------------------------------------------------------- a. in-place activations
class Block(nn.Module):
    """torchvision's pattern: convolutions followed by ``nn.ReLU(inplace=True)`` and an in-place residual sum,
    not inside an ``nn.Sequential`` (so the CAM default layer is the convolution itself)."""

    def __init__(self, inplace: bool):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.fc = nn.Linear(4 * 6 * 6, 3)
        self.inplace = inplace

    def forward(self, x):
        h = self.relu1(self.conv1(x))
        out = self.conv2(h)
        if self.inplace:
            out += h
        else:
            out = out + h
        return self.fc(self.relu2(out).flatten(1))


INPLACE_CASES = [
    *[(m, {}) for m in ("grad_cam", "grad_cam_pp", "hires_cam", "layer_cam", "xgrad_cam", "eigen_cam", "score_cam",
                        "ablation_cam")],
    ("saliency", {"layer": "conv1"}),
    ("input_x_gradient", {"layer": "conv2"}),
    ("integrated_gradients", {"layer": "conv1", "steps": 8}),
    ("integrated_gradients", {"layer": "conv2", "steps": 8, "baseline": 0.5}),
    ("gradient_shap", {"layer": "conv1", "n_samples": 4, "baseline": "mean"}),
    ("feature_ablation", {"layer": "conv1", "masker": "mean"}),
    ("feature_ablation", {"layer": "conv1", "masker": "mean", "head_only": False}),
    ("shapley_sampling", {"layer": "conv2", "masker": "mean", "n_samples": 200, "players": "channels"}),
    ("kernel_shap", {"layer": "conv2", "masker": "mean", "n_samples": 64, "players": "channels",
                     "head_only": False}),
    ("occlusion", {"layer": "conv1", "masker": "mean", "window": 3}),
    ("shapley", {"players": "grid", "local": True}),
]


@pytest.mark.parametrize("method,kw", INPLACE_CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(INPLACE_CASES)])
def test_inplace_activation_after_layer_matches_out_of_place_twin(method, kw):
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    kw = dict(kw)
    if kw.get("players") == "grid":
        kw["players"] = ak.grid(x, 2)
    a = ak.explain(Block(True).eval(), x, method, target=1, seed=0, **kw)
    b = ak.explain(Block(False).eval(), x, method, target=1, seed=0, **kw)
    assert a.layer == b.layer
    assert torch.isfinite(a.values).all()
    assert torch.allclose(a.values, b.values, rtol=1e-5, atol=1e-6), float((a.values - b.values).abs().max())


# ----------------------------------------------------------------------------- b. non-finite references
def small_mlp(n_in=4, classes=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(n_in, 8), nn.Tanh(), nn.Linear(8, classes)).eval()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float32("nan")])
@pytest.mark.parametrize("method,key", [("integrated_gradients", "baseline"), ("gradient_shap", "baseline"),
                                        ("deeplift", "baseline"), ("kernel_shap", "masker"),
                                        ("occlusion", "baseline"), ("shapley", "masker")])
def test_non_finite_number_baseline_or_masker_is_refused(method, key, bad):
    with pytest.raises(ValueError, match="not a finite number"):
        ak.explain(small_mlp(), torch.randn(2, 4), method, target=0, **{key: bad})


def test_non_finite_masker_tensor_is_refused():
    with pytest.raises(ValueError, match="masker contains 0 NaN and 1 infinite"):
        ak.Masker(torch.tensor([0.0, float("inf"), 0.0, 0.0]))


def test_cli_non_finite_baseline_exits_non_zero(tmp_path, capsys):
    from attrkit import train
    from attrkit.cli import main
    from attrkit.models import MLP
    train.save(MLP(3, hidden=(4,), out=2), tmp_path / "m.pt")
    (tmp_path / "rows.csv").write_text("a,b,c\n1,2,3\n0.5,0.1,0.2\n")
    code = main(["explain", "--model", str(tmp_path / "m.pt"), "--input", str(tmp_path / "rows.csv"), "--method",
                 "integrated_gradients", "--option", "baseline=1e999", "--out", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "baseline inf is not a finite number" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- j. targets
@pytest.mark.parametrize("target", [torch.tensor([True, False]), np.array([True, False]), np.bool_(True)])
def test_bool_target_is_refused(target):
    with pytest.raises(TypeError, match="bool"):
        ak.explain(small_mlp(), torch.randn(2, 4), "saliency", target=target)


@pytest.mark.parametrize("target", [[[0], [1]], torch.tensor([[0], [1]]), np.array([[0, 1]])])
def test_nested_target_is_refused(target):
    with pytest.raises(ValueError, match="not a nested one"):
        ak.explain(small_mlp(), torch.randn(2, 4), "saliency", target=target)


def test_ragged_target_is_refused():
    with pytest.raises(TypeError, match="one class index per sample"):
        ak.explain(small_mlp(), torch.randn(2, 4), "saliency", target=[[0, 1], [2]])


@pytest.mark.parametrize("target", [np.int64(2), np.int32(2), np.array([2, 2]), np.array(2), [np.int64(2)] * 2])
def test_numpy_integer_targets_are_accepted(target):
    x = torch.randn(2, 4)
    a = ak.explain(small_mlp(), x, "saliency", target=target)
    b = ak.explain(small_mlp(), x, "saliency", target=2)
    assert a.target.tolist() == [2, 2] and torch.equal(a.values, b.values)


# ----------------------------------------------------------------------------- batching knobs
@pytest.mark.parametrize("bad", [-1, 0, 2.5, True, "8"])
@pytest.mark.parametrize("method", ["saliency", "kernel_shap"])
def test_bad_batch_size_is_refused_before_any_model_call(method, bad):
    with pytest.raises(ValueError, match="batch_size must be a positive whole number"):
        ak.explain(small_mlp(), torch.randn(3, 4), method, target=0, batch_size=bad)


def test_bad_batch_size_or_memory_in_a_game():
    with pytest.raises(ValueError, match="batch_size must be a positive whole number"):
        ak.Game(small_mlp(), torch.randn(3, 4), batch_size=-1)
    with pytest.raises(ValueError, match="max_memory must be a positive number of bytes"):
        ak.explain(small_mlp(), torch.randn(3, 4), "saliency", max_memory=float("nan"))


def test_numpy_batch_size_is_accepted():
    x = torch.randn(5, 4)
    a = ak.explain(small_mlp(), x, "integrated_gradients", target=0, batch_size=np.int64(2))
    b = ak.explain(small_mlp(), x, "integrated_gradients", target=0, batch_size=5)
    assert torch.allclose(a.values, b.values, atol=1e-6)


# ----------------------------------------------------------------------------- exact Shapley cost
class Counting(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.lin, self.rows = nn.Linear(f, 2), 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.lin(x)


@pytest.mark.parametrize("f,max_players,what", [(64, 100, "more than 62 players"), (26, 30, "memory budget")])
def test_exact_shapley_with_raised_max_players_is_refused_with_evaluations_and_memory(f, max_players, what):
    model = Counting(f)
    with pytest.raises(ValueError, match=rf"2\^{f} coalitions: [\d,]+ model evaluations .* about [\d.e+]+ (GiB|bytes) "
                                         rf"of memory.*{what}"):
        ak.explain(model, torch.randn(1, f), "shapley", target=0, max_players=max_players)
    assert model.rows == 2          # explain's forward pass and the game's one-row memory probe: no coalition ran


def test_exact_shapley_refusal_message_states_evaluations_and_memory():
    with pytest.raises(ValueError, match=r"67,108,864 model evaluations for the batch and about 2.0 GiB"):
        ak.explain(nn.Linear(26, 2), torch.randn(1, 26), "shapley", target=0, max_players=26)


def test_exact_shapley_in_blocks_equals_one_block(monkeypatch):
    from attrkit.games import shapley as mod
    x = torch.randn(3, 6)
    players = torch.tensor([[0, 1, 2, 3, 4, 4], [0, 0, 1, 1, 2, 3], [0, 1, 2, 3, 4, 5]])   # 5, 4 and 6 players
    model = small_mlp(6)
    whole = ak.explain(model, x, "shapley", target=1, players=players)
    monkeypatch.setattr(mod, "BLOCK", 8)           # samples split across blocks and blocks across samples
    parts = ak.explain(model, x, "shapley", target=1, players=players)
    assert torch.allclose(whole.info["player_values"], parts.info["player_values"], atol=1e-12)
    gap = parts.info["player_values"].sum(1) - (parts.info["full_value"] - parts.info["base_value"])
    assert float(gap.abs().max()) < 1e-6 and parts.info["n_evals"] == whole.info["n_evals"]


# ----------------------------------------------------------------------------- i. sampling budgets
def test_shapley_sampling_budget_below_one_permutation_is_refused():
    model = nn.Sequential(nn.Linear(16, 1))
    with pytest.raises(ValueError, match=r"n_samples=25 is too small for 16 players: n_samples counts model "
                                         r"evaluations.*not permutations.*17 coalitions.*n_samples >= 30.*375"):
        ak.explain(model, torch.randn(1, 16), "shapley_sampling", n_samples=25)


def test_shapley_sampling_smallest_budget_gives_a_real_estimate():
    """At the smallest accepted budget (one antithetic pair) a linear model's Shapley values are exact:
    every ordering's marginal contributions equal w_i x_i."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 1))
    x = torch.randn(1, 16)
    a = ak.explain(model, x, "shapley_sampling", n_samples=30, seed=0)
    expected = model[0].weight[0].detach() * x[0]
    assert torch.allclose(a.info["player_values"][0].float(), expected, atol=1e-5)
    assert a.info["n_evals"] <= 30 + 3


# ----------------------------------------------------------------------------- h. noise independent of position
NOISY = [("smoothgrad", {"n_samples": 4}), ("smoothgrad_sq", {"n_samples": 4}), ("vargrad", {"n_samples": 4}),
         ("smoothgrad", {"n_samples": 3, "base": "integrated_gradients", "steps": 4}),
         ("gradient_shap", {"n_samples": 5, "stdev": 0.3}),
         ("gradient_shap", {"n_samples": 5, "baseline": "bg"})]


@pytest.mark.parametrize("method,kw", NOISY, ids=[f"{m}-{i}" for i, (m, _) in enumerate(NOISY)])
def test_noisy_methods_give_a_sample_the_same_result_at_any_batch_position(method, kw):
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(3))
    kw = dict(kw)
    if kw.get("baseline") == "bg":
        kw["baseline"] = torch.randn(6, 4, generator=torch.Generator().manual_seed(4))
    model = small_mlp()
    batch = ak.explain(model, x, method, target=1, seed=7, **kw).values
    for i in (0, 2, 3):
        alone = ak.explain(model, x[i:i + 1], method, target=1, seed=7, **kw).values
        assert torch.allclose(batch[i:i + 1], alone, rtol=1e-5, atol=1e-7), (i, float((batch[i] - alone).abs().max()))
    flipped = ak.explain(model, x.flip(0), method, target=1, seed=7, batch_size=3, **kw).values
    assert torch.allclose(batch, flipped.flip(0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["smoothgrad", "vargrad", "gradient_shap", "kernel_shap"])
def test_seed_none_is_fresh_randomness_recorded_in_info(method):
    f = 4 if method != "kernel_shap" else 10         # KernelSHAP: 10 players, 24 of 1022 coalitions drawn
    x = torch.randn(2, f, generator=torch.Generator().manual_seed(3))
    kw = {"n_samples": 4} if method != "kernel_shap" else {"n_samples": 24}
    model = small_mlp(f)
    a = ak.explain(model, x, method, target=1, **kw)
    b = ak.explain(model, x, method, target=1, **kw)
    zero = ak.explain(model, x, method, target=1, seed=0, **kw)
    assert a.info["seed"] != b.info["seed"]
    assert not torch.equal(a.values, b.values) and not torch.equal(a.values, zero.values)
    again = ak.explain(model, x, method, target=1, seed=a.info["seed"], **kw)
    assert torch.equal(again.values, a.values) and again.info["seed"] == a.info["seed"]


def test_bad_seed_is_refused():
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        ak.explain(small_mlp(), torch.randn(2, 4), "smoothgrad", seed=1.5)


@pytest.mark.parametrize("kw,what", [({"noise_std": -1.0}, "noise_std"), ({"noise_std": float("nan")}, "noise_std"),
                                     ({"noise_level": float("inf")}, "noise_level")])
def test_bad_noise_is_refused(kw, what):
    with pytest.raises(ValueError, match=f"{what} must be a finite number >= 0"):
        ak.explain(small_mlp(), torch.randn(2, 4), "smoothgrad", target=0, **kw)


@pytest.mark.parametrize("stdev", [float("nan"), -0.5, float("inf")])
def test_bad_gradient_shap_stdev_is_refused(stdev):
    with pytest.raises(ValueError, match="stdev must be a finite number >= 0"):
        ak.explain(small_mlp(), torch.randn(2, 4), "gradient_shap", target=0, stdev=stdev)


# ----------------------------------------------------------------------------- c. players [C, H, W] with N == C
def _channel_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()


def test_players_c_h_w_with_batch_equal_to_channels_is_refused_as_ambiguous():
    x = torch.randn(3, 3, 4, 4)                                              # N == C == 3
    per_channel = torch.arange(3).view(3, 1, 1).expand(3, 4, 4) * 4 + ak.grid(x[:1], 2)[0]   # 12 players
    with pytest.raises(ValueError, match=r"ambiguous.*batch size and the channel count are both 3.*unsqueeze\(1\)"
                                         r".*unsqueeze\(0\)"):
        ak.explain(_channel_model(), x, "feature_ablation", target=0, players=per_channel)
    # the explicit forms: shared per-channel labels give 12 players per sample, per-sample labels 4 or so
    shared = ak.explain(_channel_model(), x, "feature_ablation", target=0, players=per_channel.unsqueeze(0))
    assert shared.info["n_players"].tolist() == [12, 12, 12]
    lin = _channel_model()[1]
    expected = (lin.weight[0].detach().view(3, 4, 4) * x)                   # occluding to zeros: w * x per element
    per_player = torch.stack([expected[i][per_channel == k].sum() for i in range(3) for k in range(12)]).view(3, 12)
    assert torch.allclose(shared.info["player_values"].float(), per_player, atol=1e-5)
    mine = ak.explain(_channel_model(), x, "feature_ablation", target=0, players=per_channel.unsqueeze(1))
    assert mine.info["n_players"].tolist() == [4, 4, 4]                     # each sample's own pixel labels


def test_helper_players_with_batch_equal_to_channels_are_per_sample():
    pytest.importorskip("skimage")
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    sp = ak.superpixels(x, n=4)
    a = ak.explain(_channel_model8(), x, "feature_ablation", target=0, players=sp)
    b = ak.explain(_channel_model8(), x, "feature_ablation", target=0, players=sp.clone().unsqueeze(1))
    assert torch.equal(a.values, b.values)
    g = ak.grid(x, 2)                         # identical slices: both readings agree, never refused
    c = ak.explain(_channel_model8(), x, "feature_ablation", target=0, players=g.clone())
    assert c.info["n_players"].tolist() == [4, 4, 4]


def _channel_model8():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)).eval()


# ----------------------------------------------------------------------------- f. non-finite model values
class LogModel(nn.Module):
    """log and sqrt: finite on inputs > 0.25, -inf/NaN where features are zeroed."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([1.0, 2.0, 0.5, 1.5]))

    def forward(self, x):
        return torch.stack([torch.log(x * self.scale).sum(1), torch.sqrt(x - 0.25).sum(1)], 1)


GAMES = [("shapley", {}), ("shapley_sampling", {"n_samples": 12}), ("kernel_shap", {"n_samples": 14}),
         ("lime", {"n_samples": 16}), ("occlusion", {}), ("feature_ablation", {})]


@pytest.mark.parametrize("method,kw", GAMES)
@pytest.mark.parametrize("target", [0, 1])
def test_non_finite_model_values_on_masked_inputs_are_refused(method, kw, target):
    x = torch.rand(2, 4, generator=torch.Generator().manual_seed(0)) + 0.5
    with pytest.raises(ValueError, match=r"not finite \(NaN or inf\) on \d+ of \d+ masked inputs.*masker='mean'"):
        ak.explain(LogModel(), x, method, target=target, seed=0, **kw)
    ok = ak.explain(LogModel(), x, method, target=target, seed=0, masker="mean", **kw)   # inside the domain
    assert torch.isfinite(ok.values).all()


def test_non_finite_values_of_masked_layer_activations_are_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Softplus(), LogHead())
    with pytest.raises(ValueError, match=r"on \d+ of \d+ masked layer activations"):
        ak.explain(model, torch.randn(2, 4), "kernel_shap", target=0, layer="1", n_samples=6)


class LogHead(nn.Module):
    def forward(self, h):
        return torch.log(h).sum(1, keepdim=True)


@pytest.mark.parametrize("method,kw,where", [
    ("integrated_gradients", {}, "baselines"),                         # log(0) at the path's start
    ("integrated_gradients", {"baseline": -1.0}, "baselines"),
    ("gradient_shap", {"n_samples": 8, "baseline": -1.0}, "points where gradients were taken"),
    ("smoothgrad", {"noise_level": 2.0, "n_samples": 8}, "points where gradients were taken"),   # noise below 0
])
def test_non_finite_values_on_path_points_are_refused(method, kw, where):
    x = torch.rand(2, 4, generator=torch.Generator().manual_seed(0)) + 0.5
    with pytest.raises(ValueError, match=rf"not finite \(NaN or inf\) at \d+ of \d+ {where}"):
        ak.explain(LogModel(), x, method, target=0, seed=0, **kw)
    ok = ak.explain(LogModel(), x, "integrated_gradients", target=0, baseline=0.25)
    assert torch.isfinite(ok.values).all() and float(ok.info["relative_gap"].max()) < 1e-2


# ----------------------------------------------------------------------------- LRP parameters
@pytest.mark.parametrize("kw,match", [
    ({"rule": "zero", "stabilizer": 0.0}, "stabilizer must be > 0 \\(a finite number"),
    ({"epsilon": 0.0, "stabilizer": 0.0}, "stabilizer must be > 0 \\(a finite number"),
    ({"epsilon": float("nan")}, "epsilon must be >= 0 \\(a finite number"),
    ({"epsilon": -1e-3}, "epsilon must be >= 0 \\(a finite number"),
    ({"stabilizer": float("nan")}, "stabilizer must be > 0 \\(a finite number"),
    ({"rule": "gamma", "gamma": float("inf")}, "gamma must be >= 0 \\(a finite number"),
    ({"rule": "alpha_beta", "alpha": float("nan")}, "alpha must be >= 0 \\(a finite number"),
    ({"first": "zbox", "low": 1.0, "high": 0.0}, "low <= high"),
    ({"first": "zbox", "low": torch.zeros(4), "high": torch.tensor([1.0, 1.0, -1.0, 1.0])}, "low <= high"),
    ({"first": "zbox", "low": float("-inf"), "high": 1.0}, "bound low must be finite"),
])
def test_bad_lrp_parameters_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        ak.explain(small_mlp(), torch.randn(2, 4), "lrp", target=0, **kw)


# ----------------------------------------------------------------------------- wrong-rank inputs
@pytest.mark.parametrize("method", ["saliency", "kernel_shap", "lrp"])
def test_wrong_input_shape_names_the_shape_and_the_layer(method):
    with pytest.raises(ValueError, match=r"failed on the input batch of shape \(2, 5\).*layer '0' \(Linear, which "
                                         r"takes inputs \[\.\.\., 4\] \(in_features=4\)\).*mat1 and mat2"):
        ak.explain(small_mlp(), torch.randn(2, 5), method, target=0)


def test_missing_channel_dim_names_in_channels():
    x = torch.randn(2, 6, 6)                                                # [N, H, W]: the channel dim is missing
    with pytest.raises(ValueError, match=r"shape \(2, 6, 6\).*'conv1' \(Conv2d, which takes inputs \[N, 3, H, W\] "
                                         r"\(in_channels=3\)\)"):
        ak.explain(Block(False).eval(), x, "integrated_gradients", target=0)
    with pytest.raises(ValueError, match=r"shape \(2, 6, 6\).*in_channels=3"):
        ak.Game(Block(False).eval(), x)


# ----------------------------------------------------------------------------- torch.compile
def _compiled(model):
    """``torch.compile`` with the eager backend: the real ``OptimizedModule`` wrapper and dynamo tracing (which
    made hook-based methods fail), without inductor's minutes of C++ compilation on a CPU."""
    try:
        c = torch.compile(model, backend="eager")
        c(torch.rand(1, 3, 6, 6))
    except Exception as err:  # pragma: no cover - platforms without dynamo
        pytest.skip(f"torch.compile does not run here: {err}")
    return c


ATTENTION = sorted(m for m, spec in ak.methods().items() if spec.family == "attention")   # need attention layers
COMPILED_CASES = [(m, {}) for m in sorted(ak.methods())
                  if m not in ("kernel_shap", "shapley_sampling", "lime", *ATTENTION)] + \
    [("kernel_shap", {"n_samples": 40}), ("shapley_sampling", {"n_samples": 40}), ("lime", {"n_samples": 20}),
     ("saliency", {"layer": "_orig_mod.conv1"}), ("integrated_gradients", {"layer": "conv2", "steps": 4}),
     ("shapley_sampling", {"layer": "conv1", "n_samples": 20, "players": "channels"})]


@pytest.mark.parametrize("method,kw", COMPILED_CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(COMPILED_CASES)])
def test_every_method_works_on_a_compiled_model(method, kw):
    model = Block(False).eval()
    compiled = _compiled(model)
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    kw = {**kw, "players": ak.grid(x, 2)} if method == "shapley" else kw
    a = ak.explain(compiled, x, method, target=1, seed=0, **kw)
    eager_kw = {**kw, "layer": kw["layer"].replace("_orig_mod.", "")} if "layer" in kw else kw
    b = ak.explain(model, x, method, target=1, seed=0, **eager_kw)
    assert "_orig_mod" in a.info["compiled"] and "compiled" not in b.info
    assert a.layer == b.layer
    assert torch.allclose(a.values, b.values, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ATTENTION)
def test_attention_methods_work_on_a_compiled_transformer(method):
    from nets_transformer import TinyViT
    model = TinyViT(depth=2).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    compiled = torch.compile(model, backend="eager")
    try:
        compiled(x[:1])
    except Exception as err:  # pragma: no cover - platforms without dynamo
        pytest.skip(f"torch.compile does not run here: {err}")
    a = ak.explain(compiled, x, method, target=1)
    b = ak.explain(model, x, method, target=1)
    assert "_orig_mod" in a.info["compiled"] and "compiled" not in b.info
    assert a.layer == b.layer and torch.allclose(a.values, b.values, rtol=1e-5, atol=1e-7)


def test_game_on_a_compiled_model():
    model = Block(False).eval()
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    g, h = ak.Game(_compiled(model), x, layer="_orig_mod.conv1"), ak.Game(model, x, layer="conv1")
    z = torch.ones(2, g.max_players, dtype=torch.bool)
    z[:, ::2] = False
    assert torch.equal(g(z, torch.arange(2)), h(z, torch.arange(2)))


def test_players_ambiguity_per_input_of_several():
    """With several inputs, each input's labels are checked the same way (an image input with N == C)."""
    img, tab = torch.randn(3, 3, 4, 4), torch.randn(3, 2)

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(48, 1), nn.Linear(2, 1)

        def forward(self, i, t):
            return self.a(i.flatten(1)) + self.b(t)

    per_channel = (torch.arange(3).view(3, 1, 1) * 4 + ak.grid(img[:1], 2)[0]).expand(3, 4, 4).contiguous()
    with pytest.raises(ValueError, match="ambiguous"):
        ak.explain(Two(), (img, tab), "feature_ablation", players=(per_channel, torch.tensor([12, 13])))
    a = ak.explain(Two(), (img, tab), "feature_ablation", players=(ak.grid((img, tab), 2)[0], torch.tensor([4, 5])))
    assert a.info["n_players"].tolist() == [6, 6, 6]


@pytest.mark.parametrize("method,kw", [("integrated_gradients", {"baseline": "noise", "steps": 4}),
                                       ("kernel_shap", {"masker": "noise", "n_samples": 14}),
                                       ("feature_ablation", {"masker": "shuffle", "players": "pairs"})])
def test_random_references_do_not_depend_on_batch_position(method, kw):
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(5))
    kw = dict(kw)
    if kw.get("players") == "pairs":
        kw["players"] = torch.tensor([0, 0, 1, 1])
    batch = ak.explain(small_mlp(), x, method, target=0, seed=3, **kw).values
    for i in (1, 2):
        alone = ak.explain(small_mlp(), x[i:i + 1], method, target=0, seed=3, **kw).values
        assert torch.allclose(batch[i:i + 1], alone, rtol=1e-5, atol=1e-6)


def test_superpixels_of_several_inputs_stay_per_sample():
    pytest.importorskip("skimage")
    img = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))          # N == C
    tab = torch.rand(3, 2, generator=torch.Generator().manual_seed(1))

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = nn.Linear(192, 1), nn.Linear(2, 1)

        def forward(self, i, t):
            return self.a(i.flatten(1)) + self.b(t)

    sp = ak.superpixels(img, n=4)                  # one input's superpixels, given in the tuple of players
    a = ak.explain(Two(), (img, tab), "feature_ablation", players=(sp, torch.tensor([100, 101])))
    b = ak.explain(Two(), (img, tab), "feature_ablation", players=(sp.clone().unsqueeze(1), torch.tensor([100, 101])))
    assert torch.equal(a.values[0], b.values[0])


def test_wrong_shape_failing_between_layers_says_after_which_layer():
    class Viewing(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 2, 3, padding=1), nn.Linear(2 * 6 * 6, 2)

        def forward(self, x):
            return self.fc(self.conv(x).view(-1, 2 * 6 * 6))

    with pytest.raises(ValueError, match=r"shape \(2, 3, 5, 5\).*after layer 'conv' \(Conv2d\) had run"):
        ak.explain(Viewing(), torch.randn(2, 3, 5, 5), "saliency", target=0)
