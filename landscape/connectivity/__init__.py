"""Mode connectivity: are two trained networks joined by a path of low loss?

* ``alignment``: weight matching (Ainsworth et al., 2023, "Git Re-Basin", Alg. 1): permute the
  hidden units of network B so that it lines up with network A without changing B's function.
* ``paths``: linear and quadratic-Bézier paths between two weight sets (Garipov et al., 2018),
  evaluated in place along the path, the loss/error barrier (Frankle et al., 2020), and training
  of the Bézier bend.
* ``spawn``: Frankle et al. (2020) spawning: from a run's snapshot at step k, train children with
  different data orders to the end of the run's budget.

The modules take models, state dicts and tensors and return tensors, dicts and DataFrames; they
never read configuration files or paths.
"""

from .alignment import (
    Axis,
    PermutationSpec,
    align,
    apply_permutation,
    identity_permutation,
    invert_permutation,
    permutation_spec,
    random_permutation,
    weight_matching,
)
from .paths import (
    BezierPath,
    LinearPath,
    barrier,
    barrier_location,
    barrier_table,
    bezier_point,
    bezier_t_sequence,
    evaluate_path,
    linear_point,
    train_bezier,
)
from .spawn import child_order_seeds, pick_snapshot, spawn_children, train_child

__all__ = [
    "Axis",
    "BezierPath",
    "LinearPath",
    "PermutationSpec",
    "align",
    "apply_permutation",
    "barrier",
    "barrier_location",
    "barrier_table",
    "bezier_point",
    "bezier_t_sequence",
    "child_order_seeds",
    "evaluate_path",
    "identity_permutation",
    "invert_permutation",
    "linear_point",
    "permutation_spec",
    "pick_snapshot",
    "random_permutation",
    "spawn_children",
    "train_bezier",
    "train_child",
    "weight_matching",
]
