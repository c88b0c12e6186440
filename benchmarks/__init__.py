"""attrkit's benchmark suite: every workload run by attrkit and by each peer library that offers it
(Captum, SHAP, LIME, pytorch-grad-cam), side by side on the same machine, checked before timed, and stated
against the machine's float32 matrix-multiply rate. Run ``make bench`` (or ``python -m benchmarks``);
``attrkit bench W1 W3`` runs a subset."""
