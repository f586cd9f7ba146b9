"""Mode connectivity: are two trained networks joined by a path of low loss?

* ``alignment``: weight matching (Ainsworth et al., 2023, "Git Re-Basin", Alg. 1): permute the
  hidden units of network B so that it lines up with network A without changing B's function.
* ``activation``: activation matching (Ainsworth et al., 2023, Sec. 3.1): the same, with each
  layer's permutation maximising the correlation of A's and B's units on training inputs.
* ``repair``: REPAIR (Jordan et al., 2023): renormalise every hidden unit of a point on the path
  to the statistics interpolated from the endpoints' (``evaluate_path(..., repair=...)``).
* ``paths``: linear and quadratic-Bézier paths between two weight sets (Garipov et al., 2018),
  evaluated in place along the path, the loss/error barrier in two forms (above the line between
  the endpoint values, Entezari et al., 2022; above their mean, Frankle et al., 2020), and
  training of the Bézier bend.
* ``spawn``: Frankle et al. (2020) spawning: from a run's snapshot at step k, train children with
  different data orders to the end of the run's budget.

The modules take models, state dicts and tensors and return tensors, dicts and DataFrames; they
never read configuration files or paths.
"""

# Submodules load on first use (PEP 562): `landscape.connectivity.pairs`, which every Snakemake
# start imports to plan the pairs, must not pull in torch.
_WHERE = {
    "activation": ("activation_matching", "activation_correlations", "activation_points",
                   "align_activations"),
    "alignment": ("Axis", "PermutationSpec", "align", "apply_permutation", "identity_permutation",
                  "invert_permutation", "permutation_spec", "random_permutation",
                  "unit_layers", "weight_matching"),
    "paths": ("BezierPath", "LinearPath", "barrier", "barrier_location", "barrier_mean",
              "barrier_table", "bezier_images", "bezier_point", "bezier_steps",
              "bezier_t_sequence", "evaluate_path",
              "linear_point", "train_bezier"),
    "repair": ("Repair", "endpoint_statistics", "repair_corrections", "repair_points",
               "unit_statistics"),
    "spawn": ("child_order_seeds", "pick_snapshot", "spawn_children", "train_child"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
