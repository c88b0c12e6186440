"""Count how one ``ak.explain`` call moves through the library (issue 18's architecture review).

``trace(fn)`` runs ``fn()`` under ``sys.setprofile`` and counts, for Python functions defined in ``attrkit/``:

- ``calls``: function calls (a generator's resumptions and comprehensions are not counted);
- ``modules``: the attrkit modules (files) with at least one call;
- ``cross_returns``: calls from one attrkit module into another that control has already been in during the
  call (``A -> B`` then ``B -> A``, or ``C -> A`` later): control comes back to a module it has visited, from
  another module. Calls within a module, and the first entry into a module, do not count; hooks and callbacks
  the library registered count like calls (the model calls back into the library). The model's own code
  (``attrkit/models/``, the zoo) is the user's code here, not the library's;
- ``cycles`` (stricter): calls that re-enter a module still on the attrkit call stack from another module
  (``A.f -> B.g -> A.h`` before ``B.g`` returned).

Run ``python tests/trace_calls.py`` for the two calls of the issue (kernel_shap and lrp at a conv layer of a
small CNN) and the number of full forward passes lrp makes (counted at the model's first layer).
"""
from __future__ import annotations

import os
import sys
from collections import Counter

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "attrkit") + os.sep
_GEN = 0x20 | 0x200 | 0x80       # CO_GENERATOR | CO_ASYNC_GENERATOR | CO_COROUTINE


def _module(path: str) -> str | None:
    """The attrkit module of a code file (``games/game.py``), None outside the library; the model zoo's
    definitions (``attrkit/models/``) are the user's model here, not library code."""
    mod = _library_path(path)
    return None if mod is None or mod.startswith("models" + os.sep) else mod


def _library_path(path: str) -> str | None:
    if not path.startswith(PACKAGE):
        import attrkit
        root = os.path.dirname(os.path.abspath(attrkit.__file__)) + os.sep
        if not path.startswith(root):
            return None
        return path[len(root):]
    return path[len(PACKAGE):]


def trace(fn) -> dict:
    """Run ``fn()``; returns ``{"calls", "modules", "cross_returns", "per_module", "result"}``."""
    stack: list[str] = []           # module of each active attrkit frame (innermost last)
    frames: list[int] = []          # id of those frames, to pop the right one on return
    started: set[int] = set()       # generator frames already counted
    calls, cross, revisits, pairs, rpairs = Counter(), [0], [0], Counter(), Counter()
    paths: dict = {}

    def profile(frame, event, arg):
        if event not in ("call", "return"):
            return
        code = frame.f_code
        mod = paths.get(code.co_filename, 0)
        if mod == 0:
            mod = paths[code.co_filename] = _module(os.path.abspath(code.co_filename))
        if mod is None:
            return
        if event == "call":
            new = True
            if code.co_flags & _GEN:
                new = id(frame) not in started
                started.add(id(frame))
            if new and not (code.co_name.startswith("<") and code.co_name != "<lambda>"):
                seen = mod in calls
                calls[mod] += 1
                if stack and stack[-1] != mod and mod in stack:
                    cross[0] += 1
                    pairs[f"{stack[-1]} -> {mod}:{code.co_name}"] += 1
                if stack and stack[-1] != mod and seen:
                    revisits[0] += 1
                    rpairs[f"{stack[-1]} -> {mod}:{code.co_name}"] += 1
            stack.append(mod)
            frames.append(id(frame))
        elif frames and frames[-1] == id(frame):
            frames.pop()
            stack.pop()

    old = sys.getprofile()
    sys.setprofile(profile)
    try:
        result = fn()
    finally:
        sys.setprofile(old)
    return {"calls": sum(calls.values()), "modules": len(calls), "cycles": cross[0],
            "cross_returns": revisits[0], "cycle_pairs": dict(pairs), "return_pairs": dict(rpairs), "per_module": dict(calls), "result": result}


def small_cnn():
    """The model of the two traced calls: attrkit's SmallCNN (4 conv blocks), 16x16 inputs, 2 samples."""
    import torch
    from attrkit.models.cnn import SmallCNN
    model = SmallCNN(in_channels=3, num_classes=4, in_size=16, width=4, hidden=8, seed=0).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return model, x


def kernel_shap_call(model, x):
    import attrkit as ak
    return lambda: ak.explain(model, x, method="kernel_shap", target=1, layer="features.5", n_samples=256, seed=0)


def lrp_call(model, x):
    import attrkit as ak
    return lambda: ak.explain(model, x, method="lrp", target=1, layer="features.5")


def forward_passes(model, call) -> int:
    """Full forward passes of ``call()``: calls of the model's first layer (``features.0``)."""
    passes = []
    handle = model.features[0].register_forward_pre_hook(lambda m, args: passes.append(args[0].shape[0]))
    try:
        call()
    finally:
        handle.remove()
    return len(passes)


def report() -> dict:
    model, x = small_cnn()
    out = {}
    for name, make in (("kernel_shap", kernel_shap_call), ("lrp", lrp_call)):
        make(model, x)()                    # warm up (imports, lazy registries) outside the count
        t = trace(make(model, x))
        out[name] = {k: t[k] for k in ("calls", "modules", "cross_returns", "cycles")}
        out[name]["forward_passes"] = forward_passes(model, make(model, x))
        out[name]["per_module"] = t["per_module"]
        out[name]["cycle_pairs"] = t["cycle_pairs"]
        out[name]["return_pairs"] = t["return_pairs"]
    return out


if __name__ == "__main__":
    for name, r in report().items():
        print(f"{name}: {r['calls']} calls, {r['modules']} modules, {r['cross_returns']} cross-module returns, "
              f"{r['cycles']} cycles, "
              f"{r['forward_passes']} forward passes")
        if "-v" in sys.argv:
            for m, c in sorted(r["per_module"].items(), key=lambda kv: -kv[1]):
                print(f"    {c:5d}  {m}")
            for m, c in sorted(r["return_pairs"].items(), key=lambda kv: -kv[1]):
                print(f"    {c:5d}  return: {m}")
            for m, c in sorted(r["cycle_pairs"].items(), key=lambda kv: -kv[1]):
                print(f"    {c:5d}  cycle: {m}")
