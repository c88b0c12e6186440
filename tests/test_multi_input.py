"""Several inputs: a tuple (Captum's convention) or a dict of tensors, plus non-attributed forward arguments.

- agreement with Captum on a two-input model with additional_forward_args (IntegratedGradients, Saliency,
  DeepLift, FeatureAblation and KernelShap with a feature mask spanning both inputs, Occlusion);
- forward_args / forward_kwargs / a model with the argument baked in give the same numbers;
- the registry contract (batch sizes 1/2/3, per-sample targets, hooks removed) over every method on a two-input
  model whose per-sample forward argument differs between samples (a row given the wrong sample's argument
  changes the result, so the contract catches it).
"""
import inspect
import math

import pytest
import torch
from torch import nn

import attrkit as ak
from attrkit.core.modules import count_hooks

captum_attr = pytest.importorskip("captum.attr", reason="captum is a test dependency (pip install attrkit[test])")


class TwoInputs(nn.Module):
    """An image [N, 2, 6, 6] and a table [N, 3]; ``scale`` [N, 1] (not attributed) multiplies the table branch."""

    def __init__(self, seed=0, classes=3):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.act1 = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.fc_tab = nn.Linear(3, 5)
        self.act2 = nn.ReLU()
        self.head = nn.Linear(4 * 9 + 5, classes)

    def forward(self, img, tab, scale=None):
        a = self.pool(self.act1(self.conv(img))).flatten(1)
        b = self.act2(self.fc_tab(tab))
        if scale is not None:
            b = b * scale
        return self.head(torch.cat([a, b], 1))


class DictInputs(TwoInputs):
    def forward(self, pixel_values=None, table=None, scale=None):
        return super().forward(pixel_values, table, scale)


def data(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(n, 2, 6, 6, generator=g)
    tab = torch.randn(n, 3, generator=g)
    scale = torch.rand(n, 1, generator=g) * 2 + 0.5
    return img, tab, scale


def close(a, b, rtol=1e-4):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) < rtol


def both_close(ours, theirs, rtol=1e-4):
    assert isinstance(ours, tuple) and len(ours) == len(theirs)
    for o, t in zip(ours, theirs):
        assert o.shape == t.shape
        assert close(o, t, rtol), float((o - t).abs().max())


T = torch.tensor([0, 2, 1])


def test_integrated_gradients_matches_captum_with_additional_forward_args():
    model, (img, tab, scale) = TwoInputs().eval(), data()
    base = (0.1, torch.full_like(tab, -0.2))
    ours = ak.explain(model, (img, tab), "integrated_gradients", target=T, baseline=base, steps=20,
                      rule="gauss_legendre", forward_args=(scale,))
    theirs = captum_attr.IntegratedGradients(model).attribute(
        (img, tab), baselines=base, target=T, n_steps=20, method="gausslegendre", additional_forward_args=(scale,))
    both_close(ours.values, theirs)
    assert isinstance(ours.inputs, tuple) and torch.equal(ours.inputs[1], tab)
    # the completeness gap is over both inputs together (20 points leave a gap of about 2e-3 here)
    total = sum(v.sum((1, 2, 3)) if v.dim() == 4 else v.sum(1) for v in ours.values)
    gap = (total - (ours.info["f_x"] - ours.info["f_baseline"])).abs()
    assert torch.allclose(gap, ours.info["completeness_gap"], atol=1e-5) and float(gap.max()) < 1e-2


def test_saliency_and_deeplift_match_captum():
    model, (img, tab, scale) = TwoInputs().eval(), data()
    ours = ak.explain(model, (img, tab), "saliency", target=T, forward_args=(scale,))
    theirs = captum_attr.Saliency(model).attribute((img.clone().requires_grad_(), tab.clone().requires_grad_()),
                                                   target=T, abs=False, additional_forward_args=(scale,))
    both_close(ours.values, theirs)
    base = (torch.full_like(img, 0.2), torch.zeros_like(tab))
    ours = ak.explain(model, (img, tab), "deeplift", target=T, baseline=base, forward_args=(scale,))
    theirs = captum_attr.DeepLift(model).attribute((img, tab), baselines=base, target=T,
                                                   additional_forward_args=(scale,))
    both_close(ours.values, theirs)


def spanning_mask(n=3):
    """Image: 2 x 2 cells (labels 0-3, all channels); table: columns labelled 0, 4, 5 — label 0 spans both."""
    img_lab = torch.zeros(1, 1, 6, 6, dtype=torch.long)
    img_lab[..., :3, 3:], img_lab[..., 3:, :3], img_lab[..., 3:, 3:] = 1, 2, 3
    tab_lab = torch.tensor([[0, 4, 5]])
    return img_lab, tab_lab


def test_feature_ablation_with_a_mask_spanning_inputs_matches_captum():
    model, (img, tab, scale) = TwoInputs().eval(), data()
    mask = spanning_mask()
    ours = ak.explain(model, (img, tab), "feature_ablation", target=T, players=mask, baseline=(0.3, -1.0),
                      spread="paint", forward_args=(scale,))
    theirs = captum_attr.FeatureAblation(model).attribute((img, tab), baselines=(0.3, -1.0), target=T,
                                                          feature_mask=mask, additional_forward_args=(scale,))
    both_close(ours.values, theirs)
    assert int(ours.info["n_players"][0]) == 6


def test_occlusion_per_input_matches_captum():
    model, (img, tab, scale) = TwoInputs().eval(), data()
    windows, strides = ((2, 2, 2), (1,)), ((1, 2, 2), (1,))
    ours = ak.explain(model, (img, tab), "occlusion", target=T, window=windows, stride=strides, baseline=(0.0, 0.5),
                      forward_args=(scale,))
    theirs = captum_attr.Occlusion(model).attribute((img, tab), sliding_window_shapes=windows, strides=strides,
                                                    baselines=(0.0, 0.5), target=T, additional_forward_args=(scale,))
    both_close(ours.values, theirs)
    assert ours.info["n_windows"] == 9 + 3


class AllCoalitionsKernelShap(captum_attr.KernelShap):
    """Captum's KernelShap fed every coalition once with the Shapley kernel weight: a deterministic quantity
    (the exact Shapley values, Proposition 2.34) that attrkit's kernel_shap gives with the same budget."""

    def kernel_shap_perturb_generator(self, original_inp, **kwargs):
        m = kwargs["num_interp_features"]
        for code in range(1 << m):
            yield ((code >> torch.arange(m)) & 1).view(1, -1).long()

    def kernel_shap_similarity_kernel(self, _, __, z, **kwargs):
        m, k = kwargs["num_interp_features"], int(z.sum())
        if k in (0, m):
            return torch.tensor([self.inf_weight])
        return torch.tensor([(m - 1) / (math.comb(m, k) * k * (m - k))])


def test_kernel_shap_with_a_mask_spanning_inputs_matches_captum():
    model, (img, tab, scale) = TwoInputs().eval(), data()
    mask = spanning_mask()
    for i in range(2):               # (Captum's first KernelShap call costs seconds: its lazy imports)
        xi = (img[i:i + 1], tab[i:i + 1])
        ours = ak.explain(model, xi, "kernel_shap", target=int(T[i]), players=mask, n_samples=62, spread="paint",
                          baseline=(0.0, 0.0), forward_args=(scale[i:i + 1],))
        assert ours.info["exact"] is True
        theirs = AllCoalitionsKernelShap(model).attribute(xi, target=int(T[i]), n_samples=64, baselines=(0.0, 0.0),
                                                          feature_mask=mask, perturbations_per_eval=16,
                                                          additional_forward_args=(scale[i:i + 1],))
        both_close(ours.values, theirs)
        exact = ak.explain(model, xi, "shapley", target=int(T[i]), players=mask, spread="paint",
                           forward_args=(scale[i:i + 1],))
        both_close(exact.values, theirs)


def test_forward_args_kwargs_and_a_baked_model_agree():
    model, (img, tab, scale) = TwoInputs().eval(), data()
    by_args = ak.explain(model, (img, tab), "integrated_gradients", target=T, forward_args=(scale,), steps=8)
    by_kwargs = ak.explain(model, (img, tab), "integrated_gradients", target=T, forward_kwargs={"scale": scale},
                           steps=8)
    both_close(by_args.values, by_kwargs.values, 1e-6)

    class Baked(nn.Module):
        def __init__(self, s):
            super().__init__()
            self.m, self.s = model, s

        def forward(self, a, b):
            return self.m(a, b, self.s)

    for i in range(3):
        one = ak.explain(Baked(scale[i:i + 1]), (img[i:i + 1], tab[i:i + 1]), "integrated_gradients",
                         target=int(T[i]), steps=8)
        both_close(tuple(v[i:i + 1] for v in by_args.values), one.values, 1e-5)
    # a constant argument (first dim != N) is passed as it is
    const = ak.explain(model, (img, tab), "saliency", target=T, forward_args=(torch.tensor(2.0),))
    manual = ak.explain(Baked(torch.tensor(2.0)), (img, tab), "saliency", target=T)
    both_close(const.values, manual.values, 1e-6)


def test_noise_copies_carry_their_sample_forward_args():
    """SmoothGrad runs every sample's noisy copies in one batch: each copy must get its own sample's argument."""
    model, (img, tab, scale) = TwoInputs().eval(), data()
    eps = torch.randn(3 * 4, 2 * 36 + 3, generator=torch.Generator().manual_seed(3)) * 0.1
    batch = ak.explain(model, (img, tab), "smoothgrad", target=T, n_samples=4, perturbations=eps,
                       forward_args=(scale,))
    for i in range(3):
        one = ak.explain(model, (img[i:i + 1], tab[i:i + 1]), "smoothgrad", target=int(T[i]), n_samples=4,
                         perturbations=eps[4 * i:4 * i + 4], forward_args=(scale[i:i + 1],))
        both_close(tuple(v[i:i + 1] for v in batch.values), one.values, 1e-5)


def test_dict_inputs_are_keyword_arguments():
    model, (img, tab, scale) = DictInputs().eval(), data()
    a = ak.explain(model, {"pixel_values": img, "table": tab}, "integrated_gradients", target=T, steps=8,
                   forward_kwargs={"scale": scale}, baseline={"pixel_values": 0.1, "table": 0.0})
    b = ak.explain(TwoInputs().eval(), (img, tab), "integrated_gradients", target=T, steps=8,
                   forward_args=(scale,), baseline=(0.1, 0.0))
    assert isinstance(a.values, dict) and list(a.values) == ["pixel_values", "table"]
    both_close((a.values["pixel_values"], a.values["table"]), b.values, 1e-6)
    assert a.heatmap(input="pixel_values").shape == (3, 6, 6)
    with pytest.raises(ValueError, match="inputs are both|given both"):
        ak.explain(model, {"pixel_values": img, "table": tab}, "saliency", forward_kwargs={"table": tab})


def test_per_input_named_references_use_each_inputs_geometry():
    """baseline="mean" is each image's per-channel mean for the image and the column mean for the table."""
    model, (img, tab, scale) = TwoInputs().eval(), data()
    a = ak.explain(model, (img, tab), "integrated_gradients", target=T, baseline="mean", steps=4,
                   forward_args=(scale,))
    ref_img, ref_tab = a.baseline
    assert torch.allclose(ref_img, img.mean((2, 3), keepdim=True).expand_as(img))
    assert torch.allclose(ref_tab, tab.mean(0, keepdim=True).expand_as(tab))


def test_attribution_of_several_inputs_views_and_files(tmp_path):
    model, (img, tab, scale) = TwoInputs().eval(), data()
    a = ak.explain(model, (img, tab), "kernel_shap", target=T, n_samples=40, seed=0, forward_args=(scale,))
    assert len(a) == 3 and a.multi and a.input_names == [0, 1]
    with pytest.raises(ValueError, match="heatmap\\(input="):
        a.heatmap()
    assert a.heatmap(input=0).shape == (3, 6, 6) and a.heatmap(input=1).shape == (3, 3)
    assert isinstance(a.players, tuple) and a.players[0].shape[0] == 3
    b = ak.Attribution.load(a.save(tmp_path / "multi.npz"))
    assert isinstance(b.values, tuple) and all(torch.equal(u, v) for u, v in zip(a.values, b.values))
    assert all(torch.equal(u, v) for u, v in zip(a.inputs, b.inputs))
    s = a.select([1])
    assert s.values[0].shape == (1, 2, 6, 6) and s.values[1].shape == (1, 3)
    # default players: a 4 x 4 grid... here 4 x 4 cells of the 6 x 6 image plus one per column, apart
    assert int(a.info["n_players"][0]) == 16 + 3


def test_clear_errors_for_several_inputs():
    model, (img, tab, scale) = TwoInputs().eval(), data()
    with pytest.raises(ValueError, match="batch sizes"):
        ak.explain(model, (img, tab[:2]), "saliency", forward_args=(scale,))
    with pytest.raises(ValueError, match="one per input"):
        ak.explain(model, (img, tab), "integrated_gradients", baseline=(0.0, 0.0, 0.0), forward_args=(scale,))
    with pytest.raises(ValueError, match="one .* per input|tuple with one"):
        ak.explain(model, (img, tab), "kernel_shap", players=torch.zeros(3, 3, dtype=torch.long),
                   forward_args=(scale,))
    with pytest.raises(TypeError, match="integer"):
        ak.explain(model, (img, torch.zeros(3, 3, dtype=torch.long)), "saliency", forward_args=(scale,))


def test_layer_methods_with_several_inputs():
    """A layer of one branch: layer IG equals Captum's LayerIntegratedGradients on the same layer."""
    model, (img, tab, scale) = TwoInputs().eval(), data()
    ours = ak.explain(model, (img, tab), "integrated_gradients", target=T, layer="conv", steps=16,
                      forward_args=(scale,))
    theirs = captum_attr.LayerIntegratedGradients(model, model.conv).attribute(
        (img, tab), target=T, n_steps=16, additional_forward_args=(scale,))
    assert close(ours.values, theirs)
    cam = ak.explain(model, (img, tab), "grad_cam", target=T, forward_args=(scale,))
    assert cam.layer == "act1" and cam.heatmap().shape == (3, 6, 6)      # the rectified conv maps; resized


# ------------------------------------------------------------------------------------------- contract
ALL = sorted(ak.methods())


def _options(spec):
    opts = {}
    params = inspect.signature(spec.fn).parameters
    if "n_samples" in params:
        opts["n_samples"] = 16 if spec.players else 4
    if "steps" in params:
        opts["steps"] = 4
    if spec.players:
        opts["players"] = (ak.grid(torch.zeros(1, 2, 6, 6), 2), torch.tensor([[0, 4, 5]]))   # label 0 spans both
    if spec.sampled:
        opts["seed"] = 0
    return opts


def _close(a, b):
    scale = b.abs().max().clamp_min(1e-8)
    return float((a - b).abs().max() / scale) < 1e-5


def _values(a):
    return a.values if isinstance(a.values, tuple) else (a.values,)


@pytest.mark.parametrize("name", ALL)
def test_contract_two_inputs(name):
    spec = ak.methods()[name]
    model, (img, tab, scale) = TwoInputs().eval(), data()
    opts = _options(spec)
    hooks = count_hooks(model)
    if spec.family == "attention":          # a CNN + MLP: no attention to read (tested on transformers elsewhere)
        with pytest.raises(ValueError, match="attention"):
            ak.explain(model, (img, tab), name, target=0, forward_args=(scale,), **opts)
        assert count_hooks(model) == hooks
        return
    targets = [0, 2, 1]
    runs = [ak.explain(model, (img, tab), name, target=targets, batch_size=b, forward_args=(scale,), **opts)
            for b in (1, 2, 3)]
    assert count_hooks(model) == hooks, f"{name}: hooks left behind"
    assert not model.training
    for r in runs[1:]:
        for u, v in zip(_values(r), _values(runs[0])):
            assert _close(u, v), f"{name}: batch size changes the result"
    a = runs[0]
    if spec.layer != "required":
        assert isinstance(a.values, tuple) and a.values[0].shape == img.shape and a.values[1].shape == tab.shape
    assert all(torch.isfinite(v).all() for v in _values(a))
    if spec.sampled:
        again = [ak.explain(model, (img, tab), name, target=targets, forward_args=(scale,), **opts) for _ in range(2)]
        for u, v in zip(_values(again[0]), _values(again[1])):
            assert torch.equal(u, v)
    else:
        for i, t in enumerate(targets):
            one = ak.explain(model, (img[i:i + 1], tab[i:i + 1]), name, target=t, forward_args=(scale[i:i + 1],),
                             **opts)
            for u, v in zip(_values(one), _values(a)):
                assert _close(u[0], v[i]), f"{name}: sample {i} differs alone"
    if spec.layer == "optional":     # at a layer of the image branch: batch sizes and hooks again
        if spec.players:
            opts["players"] = "channels"          # 4 players (the conv's channels)
        layer_runs = [ak.explain(model, (img, tab), name, target=targets, batch_size=b, layer="conv",
                                 forward_args=(scale,), **opts) for b in (1, 3)]
        assert count_hooks(model) == hooks, f"{name} at a layer: hooks left behind"
        assert _close(layer_runs[0].values, layer_runs[1].values), f"{name} at a layer: batch size changes it"
        assert layer_runs[0].values.shape == (3, 4, 6, 6) and torch.isfinite(layer_runs[0].values).all()


def test_noise_is_scaled_per_input():
    """SmoothGrad's noise level is relative to each input's own value range (Captum: one stdev per input)."""
    model, (img, tab, scale) = TwoInputs().eval(), data()
    a = ak.explain(model, (img, tab), "smoothgrad", target=T, n_samples=3, forward_args=(scale,))
    want = torch.stack([0.15 * (v.flatten(1).max(1).values - v.flatten(1).min(1).values) for v in (img, tab)], 1)
    assert torch.allclose(a.info["noise_std"], want)
    quiet = ak.explain(model, (img, tab), "smoothgrad", target=T, n_samples=2, noise_std=(0.0, 0.0),
                       forward_args=(scale,))
    both_close(quiet.values, ak.explain(model, (img, tab), "saliency", target=T, forward_args=(scale,)).values, 1e-6)
    eps = (torch.zeros(6, 2, 6, 6), torch.ones(6, 3))
    shifted = ak.explain(model, (img, tab), "smoothgrad", target=T, n_samples=2, perturbations=eps,
                         forward_args=(scale,))
    both_close(shifted.values, ak.explain(model, (img, tab + 1), "saliency", target=T, forward_args=(scale,)).values,
               1e-6)


def test_metrics_plots_and_report_with_several_inputs(tmp_path):
    """Metrics run on the flat pack (baked or constant forward args); plots take one input (a.part); the report
    shows one entry per input."""
    from attrkit import metrics
    model, (img, tab, _) = TwoInputs().eval(), data()
    const = (torch.tensor(2.0),)
    a = ak.explain(model, (img, tab), "integrated_gradients", target=T, steps=64, forward_args=const)
    c = metrics.completeness(model, (img, tab), a, T, forward_args=const)      # recomputes f(x') from the pack
    assert torch.allclose(torch.as_tensor(c.per_sample).float(), a.info["completeness_gap"], atol=1e-6)
    d = metrics.deletion(model, (img, tab), a, T, forward_args=const, steps=5)
    assert d.per_sample.shape == (3,) and math.isfinite(d.score)
    part = a.part(0)
    assert torch.equal(part.values, a.values[0]) and torch.equal(part.inputs, img) and part.info["input"] == 0
    with pytest.raises(ValueError, match=r"a.part\(0\)"):
        ak.plot(a)
    ak.plot(part, path=tmp_path / "img.png")
    out = ak.report(a, tmp_path / "r.html")
    text = out.read_text() if hasattr(out, "read_text") else (tmp_path / "r.html").read_text()
    assert "[input 0]" in text and "[input 1]" in text


def test_metrics_with_per_sample_forward_args_equal_one_sample_at_a_time():
    """A forward argument with one row per sample (scale [N, 1]) reaches every perturbed copy of its own sample:
    the batched metric equals the metric on each sample alone with its own argument, and a wrong sample's argument
    changes the result (so mixing rows up would be caught)."""
    from attrkit import metrics
    model, (img, tab, scale) = TwoInputs().eval(), data()
    a = ak.explain(model, (img, tab), "integrated_gradients", target=T, steps=32, forward_args=(scale,))
    for metric, kw in ((metrics.deletion, {"steps": 5}), (metrics.completeness, {}),
                       (metrics.faithfulness_correlation, {"n_subsets": 6, "seed": 0})):
        both = metric(model, (img, tab), a, T, forward_args=(scale,), **kw)
        alone = [metric(model, (img[i:i + 1], tab[i:i + 1]), a.select(i), T[i:i + 1],
                        forward_args=(scale[i:i + 1],), **kw) for i in range(3)]
        want = torch.tensor([float(r.per_sample[0]) for r in alone], dtype=torch.float64)
        got = torch.as_tensor(both.per_sample, dtype=torch.float64)
        assert torch.allclose(got, want, atol=1e-9), (metric.__name__, got, want)
        agg = want.max() if both.name == "completeness" else want.mean()
        assert abs(both.score - float(agg)) < 1e-9
    wrong = metrics.deletion(model, (img, tab), a, T, forward_args=(scale.flip(0),), steps=5)
    right = metrics.deletion(model, (img, tab), a, T, forward_args=(scale,), steps=5)
    assert float(abs(torch.as_tensor(wrong.per_sample - right.per_sample)).max()) > 1e-3
    with pytest.raises(ValueError, match="one row per sample"):
        metrics.cascading_randomisation(model, (img, tab), "saliency", T, forward_args=(scale,))


def test_run_over_a_data_set_of_several_inputs(tmp_path):
    """ak.run takes ((x1, x2), y) or a dict of arrays; shards keep one flat row per sample and read back per input."""
    img, tab, _ = data(n=5)

    class Baked(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = TwoInputs()

        def forward(self, a, b):
            return self.m(a, b, 2.0)

    model = Baked().eval()
    run = ak.run(lambda: model, ((img, tab), torch.tensor([0, 1, 2, 0, 1])), "integrated_gradients",
                 out=tmp_path / "run", shard_size=2, target="label", steps=8)
    values = run.values()
    direct = ak.explain(model, (img, tab), "integrated_gradients", target=torch.tensor([0, 1, 2, 0, 1]), steps=8)
    both_close(values, direct.values, 1e-5)
    again = ak.load_run(tmp_path / "run")
    assert isinstance(again.values(), tuple) and again.values()[0].shape == img.shape


def baked_model():
    """A two-input model for the command line (``test_multi_input:baked_model``)."""
    class Baked(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = TwoInputs()

        def forward(self, a, b):
            return self.m(a, b, 2.0)
    return Baked().eval()


def test_cli_explains_several_inputs_from_an_npz(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the CLI's pictures need matplotlib")
    from attrkit.cli import main
    img, tab, _ = data()
    np = pytest.importorskip("numpy")
    np.savez(tmp_path / "inputs.npz", img.numpy(), tab.numpy())
    code = main(["explain", "--model", "test_multi_input:baked_model", "--input", str(tmp_path / "inputs.npz"),
                 "--method", "saliency", "--target", "1", "--out", str(tmp_path / "out"), "-q"])
    assert code == 0, capsys.readouterr()
    saved = ak.Attribution.load(next((tmp_path / "out").glob("*.npz")))
    direct = ak.explain(baked_model(), (img, tab), "saliency", target=1)
    both_close(saved.values, direct.values, 1e-6)
    assert len(list((tmp_path / "out").glob("*input0*.png"))) == 3 and \
        len(list((tmp_path / "out").glob("*input1*.png"))) == 3


def test_background_of_several_inputs():
    """ak.Background((img_rows, tab_rows)) averages over background rows of both inputs."""
    from attrkit.games import Background
    model, (img, tab, scale) = TwoInputs().eval(), data()
    bg_img, bg_tab, _ = data(n=4, seed=5)
    a = ak.explain(model, (img, tab), "shapley", target=T, players=spanning_mask(),
                   masker=Background((bg_img, bg_tab)), forward_args=(scale,), spread="share")
    # efficiency: values sum to f(x) - mean_r f(background row r) per sample
    with torch.no_grad():
        fx = model(img, tab, scale).gather(1, T.view(-1, 1))[:, 0]
        fb = torch.stack([model(bg_img, bg_tab, scale[i].expand(4, 1))[:, int(T[i])].mean() for i in range(3)])
    total = a.values[0].sum((1, 2, 3)) + a.values[1].sum(1)
    assert torch.allclose(total, fx - fb, atol=1e-5)


def test_docs_example_runs():
    """docs/inputs.md's example runs as written and gives what it says."""
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "inputs.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    scope: dict = {}
    exec(compile(code, "docs/inputs.md", "exec"), scope)
    a, s, d = scope["a"], scope["s"], scope["d"]
    assert a.values[0].shape == (4, 3, 16, 16) and a.values[1].shape == (4, 5)
    assert a.heatmap(input=0).shape == (4, 16, 16)
    assert int(s.info["n_players"][0]) == 4 + 3                      # 4 cells + columns 4, 5, 6 (0 is shared)
    assert isinstance(d.values, dict) and list(d.values) == ["img", "tab"]


def test_a_game_built_directly_on_several_inputs():
    """ak.Game(model, (img, tab), players=(...)) packs like explain: v(all) - v(none) = f(x) - f(reference)."""
    model, (img, tab, _) = TwoInputs().eval(), data()
    baked = lambda a, b: model(a, b, 2.0)
    g = ak.Game(baked, (img, tab), players=spanning_mask(), masker=(0.5, "mean"), target=1)
    assert g.max_players == 6
    rows = torch.arange(3)
    with torch.no_grad():
        fx = baked(img, tab)[:, 1]
        fr = baked(torch.full_like(img, 0.5), tab.mean(0, keepdim=True).expand_as(tab))[:, 1]
    assert torch.allclose((g.full(rows) - g.empty(rows))[:, 0].float(), fx - fr, atol=1e-5)


def test_a_list_with_one_item_per_sample_is_flagged():
    model, (img, tab, scale) = TwoInputs().eval(), data()
    with pytest.warns(UserWarning, match="only tensors|Only tensors"):
        ak.explain(lambda a, b, weights: model(a, b, 2.0), (img, tab), "saliency", target=1,
                   forward_args=([1.0, 2.0, 3.0],))


def test_run_cuts_per_sample_forward_args_to_each_shard(tmp_path):
    """ak.run with a per-sample forward argument: each shard gets its own samples' rows (a constant passes whole);
    the run equals one ak.explain over all samples, and a shuffled argument gives a different run."""
    img, tab, scale = data(n=5)
    model = TwoInputs().eval()
    kw = dict(shard_size=2, steps=8, target=1)
    run = ak.run(lambda: model, ((img, tab), None), "integrated_gradients", out=tmp_path / "r",
                 forward_args=(scale,), **kw)
    direct = ak.explain(model, (img, tab), "integrated_gradients", target=1, steps=8, forward_args=(scale,))
    both_close(run.values(), direct.values, 1e-5)
    const = ak.run(lambda: model, ((img, tab), None), "saliency", out=tmp_path / "c",
                   forward_kwargs={"scale": torch.tensor(2.0)}, shard_size=2, target=1)
    both_close(const.values(), ak.explain(model, (img, tab), "saliency", target=1, forward_args=(2.0,)).values, 1e-6)
    wrong = ak.run(lambda: model, ((img, tab), None), "integrated_gradients", out=tmp_path / "w",
                   forward_args=(scale.flip(0),), **kw)
    assert not torch.allclose(wrong.values()[1], run.values()[1])


def test_torchscript_model_with_several_inputs():
    """A scripted two-input model: input-level methods work (equal to the eager model), hook methods refuse."""
    import warnings
    model, (img, tab, scale) = TwoInputs().eval(), data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
    a = ak.explain(scripted, (img, tab), "saliency", target=1, forward_args=(scale,))
    b = ak.explain(model, (img, tab), "saliency", target=1, forward_args=(scale,))
    both_close(a.values, b.values, 1e-6)
    with pytest.raises(TypeError, match="TorchScript"):
        ak.explain(scripted, (img, tab), "lrp", target=1, forward_args=(scale,))
