# Figures: one rule per entry of a plot stage's `PLOTS = [...]` (landscape/stages/plot_*.py,
# read by landscape/registry.py: plots), in findings-page order. Each reads gathered tables
# (never checkpoints) and draws PNGs (plus the other formats of `plots.formats`), each a report()
# item with its caption (workflow/report/*.rst). A plot is a target of the study when every
# table it reads is made by it (common.smk: plot_targets), so switching a stage off drops its
# figures too. `python -m landscape plot-<x> --help` lists a plot stage's flags.
PLOTS = registry.plots()


def plot_runs(p):
    """The runs a per-run figure list covers: those of the measurement `p.runs_of`."""
    return [w["run"] for w in JOBS[p.runs_of]] if p.runs_of else []


def plot_outputs(p):
    out = {}
    for flag, (name, caption, category) in p.figures.items():
        out[flag.replace("-", "_")] = report(f"{RES}/figures/{name}",
                                             caption=f"../report/{caption}", category=category)
    for flag, (pattern, caption, category, sub) in p.per_run.items():
        files = [f"{RES}/figures/{pattern.format(run=run)}" for run in plot_runs(p)]
        out[flag.replace("-", "_")] = [report(f, caption=f"../report/{caption}",
                                              category=category, subcategory=sub) for f in files]
    pngs = [f"{RES}/figures/{name}" for name, _, _ in p.figures.values()] + [
        f"{RES}/figures/{pattern.format(run=run)}" for pattern, *_ in p.per_run.values()
        for run in plot_runs(p)]
    out["vectors"] = vector_copies(*pngs)
    return out


def plot_args(p):
    """The plot stage's flags: its tables, its figures, the per-run lists and their run ids."""

    def args(wildcards, input, output):
        out = [f"--{flag} {input[flag.replace('-', '_')]}" for flag in p.tables]
        out += [f"--{flag} {output[flag.replace('-', '_')]}" for flag in p.figures]
        out += [f"--{flag} {' '.join(output[flag.replace('-', '_')])}" for flag in p.per_run]
        if p.run_ids:
            out.append(f"--{p.run_ids} {' '.join(plot_runs(p))}")
        return " ".join(out)

    return args


for _p in PLOTS:

    rule:
        name:
            _p.rule
        input:
            **{flag.replace("-", "_"): f"{RES}/tables/{t}.parquet" for flag, t in _p.tables.items()},
            code=src(_p.module),
        output:
            **plot_outputs(_p),
        params:
            command=_p.command,  # (the shell line runs later: it must not read the loop's _p)
            args=plot_args(_p),
            plots=as_json(config["plots"]),
        conda:
            ENV
        log:
            f"{RES}/logs/{_p.rule}.log",
        localrule: True
        shell:
            "python -m landscape {params.command} {params.args} --params {params.plots:q}"
            " > {log} 2>&1"
