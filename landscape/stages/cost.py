"""Stage: where the time goes. Per computing stage of a finished study: jobs, CPU- and
wall-seconds (from its Snakemake benchmark files), the FLOPs its work needs (units from the
study's tables × FLOPs per unit counted on the real model), the achieved GFLOP per CPU-second
and its fraction of a one-thread fp32 matmul peak, the rates of the main kernels (slices,
robustness, path evaluation, training steps at B = 128, curvature) against their targets, and
the per-job fixed cost, all measured by this command (``landscape.cost``). Reads RESULTS_DIR
only; ``--markdown`` writes the same as Markdown."""

from __future__ import annotations

NAME = "cost"
HELP = ("cost model of a finished study: CPU time per stage beside the FLOPs its work needs, "
        "the achieved rate against a one-thread matmul peak, and per-job fixed cost")


def add_arguments(p) -> None:
    import argparse

    from ..cost import RATE_COLUMNS, RATE_TARGETS, REPORT_COLUMNS

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = ("columns of the report:\n" + "\n".join(
        f"  {name:<16} {doc}" for name, doc in REPORT_COLUMNS.items())
        + "\n\nkernel rates against their targets ("
        + ", ".join(f"{k} ≥ {v:.0%}" for k, v in RATE_TARGETS.items()) + "):\n"
        + "\n".join(f"  {name:<16} {doc}" for name, doc in RATE_COLUMNS.items()))
    p.add_argument("results_dir", help="results folder of a finished study (benchmarks/, "
                                       "tables/, runs/, data/)")
    p.add_argument("--markdown", default=None, metavar="FILE",
                   help="also write the report as Markdown tables to FILE")


def run(args) -> None:
    from ..cost import cost_report, format_report
    from ..io import atomic_path

    res = cost_report(args.results_dir)
    parts = (res["report"], res["units"], res["flops"], res["peak"], res["per_image"],
             res["fixed"], res["notes"])
    print(format_report(*parts, rates=res["rates"]), end="")
    if args.markdown:
        text = (f"# Where the time goes: {args.results_dir}\n\n"
                + format_report(*parts, markdown=True, rates=res["rates"]))
        with atomic_path(args.markdown) as tmp:
            tmp.write_text(text)
        print(f"wrote {args.markdown}")
