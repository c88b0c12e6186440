"""Sanity checks by parameter randomisation (Adebayo et al. 2018): maps must change when the weights go,
and the model's weights must come back exactly."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import attrkit as ak
from conftest import record
from attrkit import metrics as M


@pytest.fixture(scope="module")
def trained():
    from attrkit import zoo
    from attrkit.data import shapes
    model = zoo.pretrained("shapes_cnn").eval()
    return model, shapes(n=6, seed=4242, progress=False).x


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_cascading_randomisation_destroys_grad_cam_and_restores_weights(trained):
    model, x = trained
    before = _snapshot(model)
    params_before = [p.data_ptr() for p in model.parameters()]
    r = M.cascading_randomisation(model, x, "grad_cam", seed=0)
    layers = M.parametrised_layers(model)
    assert r.layers == layers and len(r.stages) == len(layers)
    assert r.stages[0] == [layers[-1]]                           # the top layer goes first
    half = math.ceil(len(layers) / 2)
    rho = r.rows()[half - 1]["spearman_abs"]
    # spread over the shipped zoo (1, 2 threads, mkldnn off) and the zoo retrained with 2 threads and seeds 1, 2
    # (conftest.py): 0.17..0.25
    assert record("sanity_cascading_rho_half", rho) < 0.5, r.rows()
    assert r.similarity["spearman_abs"].shape == (len(layers), x.shape[0])
    assert r.randomised_maps.shape == (len(layers), x.shape[0]) + tuple(x.shape[2:])
    assert r.maps.shape == (x.shape[0],) + tuple(x.shape[2:])
    # the weights: bit-for-bit the same, in the same tensors
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.data_ptr() for p in model.parameters()] == params_before
    assert r.details["weights_restored"]
    # the original maps are reproduced by explain on the untouched model
    again = ak.explain(model, x, "grad_cam", target=torch.as_tensor(model(x).argmax(1))).heatmap()
    assert np.allclose(again.numpy(), r.maps, atol=1e-5)


def test_independent_randomisation_touches_one_layer_per_stage():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 64, 3))
    x = torch.rand(3, 3, 8, 8)
    before = _snapshot(model)
    ind = M.independent_randomisation(model, x, "input_x_gradient", seed=1)
    cas = M.cascading_randomisation(model, x, "input_x_gradient", seed=1)
    assert ind.stages == [["0"], ["2"], ["5"]]
    assert cas.stages == [["5"], ["5", "2"], ["5", "2", "0"]]
    # cascading stage 1 and independent stage 3 randomise the same single layer with the same seed
    assert np.allclose(cas.randomised_maps[0], ind.randomised_maps[2])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    rows = ind.rows()
    assert [r["layer"] for r in rows] == ["0", "2", "5"] and all(r["n_randomised"] == 1 for r in rows)
    for s in M.sanity.SIMILARITIES:
        assert np.isfinite(ind.similarity[s]).all() and np.abs(ind.similarity[s]).max() <= 1.0 + 1e-9


def test_layer_level_maps_and_a_chosen_layer_list():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 64, 3))
    x = torch.rand(2, 3, 8, 8)
    r = M.cascading_randomisation(model, x, "input_x_gradient", layer="3", layers=["2", "5"],
                                  similarities=("spearman", "ssim"))
    assert r.layers == ["2", "5"] and set(r.similarity) == {"spearman", "ssim"}
    assert r.randomised_maps.shape == (2, 2, 8, 8)               # layer maps resized to the input
    with pytest.raises(ValueError, match="no layer"):
        M.cascading_randomisation(model, x, "saliency", layers=["nope"])
    with pytest.raises(ValueError, match="mode"):
        M.model_randomisation(model, x, "saliency", mode="sideways")
    with pytest.raises(ValueError, match="similarities"):
        M.model_randomisation(model, x, "saliency", similarities=("psnr",))


def test_randomise_layer_is_seeded():
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    M.randomise_layer(a, 7)
    M.randomise_layer(b, 7)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    state = torch.random.get_rng_state()
    M.randomise_layer(a, 8)
    assert torch.equal(state, torch.random.get_rng_state())     # the global RNG is left alone
