"""What a ``MethodSpec`` declares (options, default layer, reference and budget options, validation, quick options)
agrees with the method functions and with what ``explain`` does."""
import inspect

import pytest
import torch

import attrkit as ak
from attrkit.gradients.noise import NOISE_OPTIONS, with_noise
from attrkit.registry import methods


def test_options_are_the_signature_read_once():
    for name, spec in methods().items():
        params = inspect.signature(spec.fn).parameters
        named = {k: p.default for k, p in params.items() if k != "problem" and p.kind != p.VAR_KEYWORD}
        assert dict(spec.options) == named, name
        var = [k for k, p in params.items() if p.kind == p.VAR_KEYWORD]
        assert spec.extra_options == (var[0] if var else ""), name
        assert spec.reference_option == ("baseline" if "baseline" in named else "masker" if "masker" in named else "")
        assert spec.budget_option == ("n_samples" if "n_samples" in named else "")
    assert methods()["saliency"].options["abs"] is False and methods()["integrated_gradients"].options["max_steps"] == 1024
    assert methods()["shapley"].reference_option == "baseline" and methods()["lime"].budget_option == "n_samples"
    with pytest.raises(TypeError):
        methods()["saliency"].options["abs"] = True          # read-only


def test_default_layer_is_declared_by_every_method_that_needs_a_layer():
    for name, spec in methods().items():
        if spec.layer == "required":
            assert callable(spec.default_layer), name
        else:
            assert spec.default_layer is None, name
    assert methods()["grad_cam"].default_layer is methods()["score_cam"].default_layer


def test_validate_raises_what_explain_raises():
    model, x = torch.nn.Linear(3, 2), torch.ones(1, 3)
    for kwargs, err in [({"method": "integrated_gradients", "step": 8}, TypeError),
                        ({"method": "attention_rollout", "layer": "0"}, ValueError),
                        ({"method": "saliency", "noise": {"n_sample": 4}}, ValueError),
                        ({"method": "saliency", "noise": "lots"}, TypeError),
                        ({"method": "kernel_shap", "noise": True}, ValueError)]:
        with pytest.raises(err) as from_validate:
            ak.validate(**kwargs)
        with pytest.raises(err) as from_explain:
            ak.explain(model, x, target=0, **kwargs)
        assert str(from_validate.value) == str(from_explain.value)
    assert ak.validate("integrated_gradients", steps=8, pad_id=0).name == "integrated_gradients"   # explain's own
    assert ak.validate("smoothgrad", base="integrated_gradients", steps=8).name == "smoothgrad"      # **base_options
    assert ak.validate("saliency", noise={"n_samples": 4, "kind": "vargrad"}).name == "saliency"


def test_noise_options_are_the_noise_wrappers_own():
    params = inspect.signature(with_noise).parameters
    assert set(NOISE_OPTIONS) == {k for k, p in params.items()
                                  if k not in ("problem", "base") and p.kind != p.VAR_KEYWORD}


def test_quick_options_settings():
    x = torch.rand(1, 3, 32, 32)
    spec = methods()
    exp = dict(presets={"integrated_gradients": {"steps": 16}}, grid_cells=8, budget=256, seed=3)
    ks = spec["kernel_shap"].quick_options(x, "pixel", **exp)
    assert list(ks) == ["players", "n_samples", "seed"] and ks["n_samples"] == 256 and ks["seed"] == 3
    assert int(ks["players"].max()) + 1 == 64
    assert int(spec["shapley"].quick_options(x, "pixel", **exp)["players"].max()) + 1 == 9
    assert spec["shapley"].quick_options(x, "layer", **exp) is None                      # 2^cells coalitions
    assert spec["integrated_gradients"].quick_options(x, "pixel", **exp) == {"steps": 16}
    assert spec["grad_cam"].quick_options(x, "pixel", **exp) is None
    assert spec["attention_rollout"].quick_options(x, "layer", **exp) is None
    demo = dict(steps=32, noise_samples=16, grid_cells=8, max_exact_players=12, per_player=4,
                skip_families=("attention",))
    assert spec["shapley_sampling"].quick_options(x, "pixel", **demo)["n_samples"] == 4 * 2 * 64
    assert spec["lime"].quick_options(torch.rand(5, 30), "table", n_players=30, **demo) == {"n_samples": 120}
    assert spec["lime"].quick_options(torch.rand(5, 10), "table", n_players=10, **demo) == {"n_samples": 64}
    assert spec["shapley"].quick_options(torch.rand(5, 10), "table", n_players=10, **demo) == {}
    assert spec["shapley"].quick_options(torch.rand(5, 13), "table", n_players=13, **demo) is None
    assert spec["vargrad"].quick_options(x, "pixel", **demo) == {"n_samples": 16}
    assert spec["attention_probe"].quick_options(x, "layer", **demo) is None
    with pytest.raises(ValueError, match="level"):
        spec["saliency"].quick_options(x, "pixels")


def test_register_refuses_inconsistent_declarations():
    from attrkit.registry import register
    fn = lambda problem: None
    with pytest.raises(ValueError, match="default_layer"):
        register("_bad_default_layer", family="gradient", summary="-", layer="never", default_layer=print)(fn)
    with pytest.raises(ValueError, match="layer must be"):
        register("_bad_layer", family="gradient", summary="-", layer="sometimes")(fn)
    assert "_bad_default_layer" not in methods() and "_bad_layer" not in methods()
