"""ak.Background is public, and a table of rows given as baseline=/masker= of a game is read as a background set
with a warning that says so (issue 17)."""
import warnings

import pytest
import torch
from torch import nn

import attrkit as ak


def _linear():
    torch.manual_seed(0)
    return nn.Linear(5, 1).eval()


def test_rows_as_baseline_are_a_background_set_with_the_closed_form():
    """For f(x) = w.x + b the Shapley value of feature i over a background is w_i (x_i - mean_r b_ri)."""
    model = _linear()
    g = torch.Generator().manual_seed(1)
    x, rows = torch.randn(2, 5, generator=g), torch.randn(30, 5, generator=g)
    with pytest.warns(UserWarning, match=r"table of 30 rows \(30, 5\) for 2 sample\(s\): it is read as a "
                                         r"background set.*ak\.Background\(rows\)"):
        a = ak.explain(model, x, method="shapley", baseline=rows)
    want = model.weight.detach()[0] * (x - rows.mean(0))
    torch.testing.assert_close(a.values, want, rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # the explicit form says it: no warning
        b = ak.explain(model, x, method="shapley", masker=ak.Background(rows))
    torch.testing.assert_close(a.values, b.values)
    assert "background(30 rows)" in b.info["masker"]
    assert ak.Background is ak.games.Background and "Background" in dir(ak)


def test_per_sample_rows_stay_references_and_gradient_errors_name_the_right_thing():
    model = _linear()
    x = torch.randn(2, 5)
    ref = torch.randn(2, 5)                                 # one row per sample: per-sample references
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = ak.explain(model, x, method="shapley", baseline=ref)
    torch.testing.assert_close(a.values, model.weight.detach()[0] * (x - ref), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"give one of shape \(1, 5\) or \(5,\) \(a background set of rows: "
                                         r"ak.Background\(rows\), for games\)") as err:
        ak.explain(model, x[:1], method="integrated_gradients", baseline=torch.randn(7, 5))
    assert "(1, 5), (1, 5)" not in str(err.value)
