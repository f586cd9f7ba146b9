# Figures: each plot rule reads gathered tables (never checkpoints) and draws PNGs (plus the
# other formats of `plots.formats`). A plot is a target of the study when every table it reads is
# made by it (common.smk: plot_targets), so switching a stage off drops its figures too.
#   plot_training        training, runs          -> figures/training_curves, final_vs_hparams
#   plot_hessian         hessian_*, sharpness    -> figures/hessian_{density,generalisation,sharpness}
#   plot_matrices        curvature_matrices, ... -> figures/hessian_{matrices,layers}
#   plot_slices          slice_*, pca_variance   -> figures/slices_*, slices/{contour,surface}_{run}
#   plot_connectivity    connectivity, barriers  -> figures/connectivity_{paths,barriers}
#   plot_spawn           spawn_barriers          -> figures/connectivity_spawn
#   plot_robustness      robustness              -> figures/robustness_noise
#   plot_generalisation  measures, correlations  -> figures/generalisation_{measures,correlations}
SLICE_RUNS = [w["run"] for w in JOBS["slice_directions"]]
SLICE_RUN_FIGURES = {kind: [f"{RES}/figures/slices/{kind}_{run}.png" for run in SLICE_RUNS]
                     for kind in ("contour", "surface")}


localrules:
    plot_hessian,
    plot_matrices,
    plot_slices,
    plot_connectivity,
    plot_spawn,
    plot_robustness,
    plot_generalisation,


rule plot_hessian:
    input:
        eigs=f"{RES}/tables/hessian_eigs.parquet",
        trace=f"{RES}/tables/hessian_trace.parquet",
        density=f"{RES}/tables/hessian_density.parquet",
        sharpness=f"{RES}/tables/sharpness_trajectory.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_hessian"),
    output:
        density=report(
            f"{RES}/figures/hessian_density.png",
            caption="../report/hessian_density.rst",
            category="Curvature",
        ),
        generalisation=report(
            f"{RES}/figures/hessian_generalisation.png",
            caption="../report/hessian_generalisation.rst",
            category="Curvature",
        ),
        sharpness=report(
            f"{RES}/figures/hessian_sharpness.png",
            caption="../report/hessian_sharpness.rst",
            category="Curvature",
        ),
        vectors=vector_copies(
            *(f"{RES}/figures/hessian_{f}.png" for f in ("density", "generalisation", "sharpness"))
        ),
    params:
        plots=as_json(config["plots"]),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_hessian.log",
    shell:
        "python -m landscape plot-hessian --eigs {input.eigs} --trace {input.trace}"
        " --density {input.density} --sharpness {input.sharpness} --runs {input.runs}"
        " --params {params.plots:q} --out-density {output.density}"
        " --out-generalisation {output.generalisation} --out-sharpness {output.sharpness}"
        " > {log} 2>&1"


rule plot_slices:
    input:
        slice_1d=f"{RES}/tables/slice_1d.parquet",
        slice_2d=f"{RES}/tables/slice_2d.parquet",
        trajectory=f"{RES}/tables/trajectory_projection.parquet",
        pca=f"{RES}/tables/pca_variance.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_slices"),
    output:
        curves=report(
            f"{RES}/figures/slices_1d.png",
            caption="../report/slice_1d.rst",
            category="Loss landscape",
        ),
        multiples=report(
            f"{RES}/figures/slices_multiples.png",
            caption="../report/slice_multiples.rst",
            category="Loss landscape",
        ),
        contours=[
            report(f, caption="../report/slice_contour.rst", category="Loss landscape",
                   subcategory="contours")
            for f in SLICE_RUN_FIGURES["contour"]
        ],
        surfaces=[
            report(f, caption="../report/slice_surface.rst", category="Loss landscape",
                   subcategory="surfaces")
            for f in SLICE_RUN_FIGURES["surface"]
        ],
        vectors=vector_copies(
            f"{RES}/figures/slices_1d.png",
            f"{RES}/figures/slices_multiples.png",
            *SLICE_RUN_FIGURES["contour"],
            *SLICE_RUN_FIGURES["surface"],
        ),
    params:
        plots=as_json(config["plots"]),
        runs=" ".join(SLICE_RUNS),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_slices.log",
    shell:
        "python -m landscape plot-slices --slice-1d {input.slice_1d} --slice-2d {input.slice_2d}"
        " --trajectory {input.trajectory} --pca {input.pca} --runs {input.runs}"
        " --params {params.plots:q} --curves {output.curves} --multiples {output.multiples}"
        " --run-ids {params.runs} --contours {output.contours} --surfaces {output.surfaces}"
        " > {log} 2>&1"


rule plot_connectivity:
    input:
        paths=f"{RES}/tables/connectivity.parquet",
        barriers=f"{RES}/tables/barriers.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_connectivity"),
    output:
        paths=report(
            f"{RES}/figures/connectivity_paths.png",
            caption="../report/connectivity_paths.rst",
            category="Connectivity",
        ),
        barriers=report(
            f"{RES}/figures/connectivity_barriers.png",
            caption="../report/connectivity_barriers.rst",
            category="Connectivity",
        ),
        vectors=vector_copies(
            f"{RES}/figures/connectivity_paths.png", f"{RES}/figures/connectivity_barriers.png"
        ),
    params:
        plots=as_json(config["plots"]),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_connectivity.log",
    shell:
        "python -m landscape plot-connectivity --paths {input.paths}"
        " --barriers {input.barriers} --runs {input.runs} --params {params.plots:q}"
        " --out-paths {output.paths} --out-barriers {output.barriers} > {log} 2>&1"


rule plot_spawn:
    input:
        spawn=f"{RES}/tables/spawn_barriers.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_connectivity"),
    output:
        figure=report(
            f"{RES}/figures/connectivity_spawn.png",
            caption="../report/connectivity_spawn.rst",
            category="Connectivity",
        ),
        vectors=vector_copies(f"{RES}/figures/connectivity_spawn.png"),
    params:
        plots=as_json(config["plots"]),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_spawn.log",
    shell:
        "python -m landscape plot-connectivity --spawn {input.spawn} --runs {input.runs}"
        " --params {params.plots:q} --out-spawn {output.figure} > {log} 2>&1"


rule plot_robustness:
    input:
        noise=f"{RES}/tables/robustness.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_robustness"),
    output:
        figure=report(
            f"{RES}/figures/robustness_noise.png",
            caption="../report/robustness_noise.rst",
            category="Robustness",
        ),
        vectors=vector_copies(f"{RES}/figures/robustness_noise.png"),
    params:
        plots=as_json(config["plots"]),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_robustness.log",
    shell:
        "python -m landscape plot-robustness --robustness {input.noise} --runs {input.runs}"
        " --params {params.plots:q} --out {output.figure} > {log} 2>&1"


rule plot_generalisation:
    input:
        measures=f"{RES}/tables/measures.parquet",
        correlations=f"{RES}/tables/correlations.parquet",
        granulated=f"{RES}/tables/granulated.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_generalisation"),
    output:
        measures=report(
            f"{RES}/figures/generalisation_measures.png",
            caption="../report/generalisation_measures.rst",
            category="Generalisation",
        ),
        correlations=report(
            f"{RES}/figures/generalisation_correlations.png",
            caption="../report/generalisation_correlations.rst",
            category="Generalisation",
        ),
        vectors=vector_copies(f"{RES}/figures/generalisation_measures.png", f"{RES}/figures/generalisation_correlations.png"),
    params:
        plots=as_json(config["plots"]),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_generalisation.log",
    shell:
        "python -m landscape plot-generalisation --measures {input.measures}"
        " --correlations {input.correlations} --granulated {input.granulated} --runs {input.runs}"
        " --params {params.plots:q} --out-measures {output.measures}"
        " --out-correlations {output.correlations} > {log} 2>&1"


rule plot_matrices:
    input:
        matrices=f"{RES}/tables/curvature_matrices.parquet",
        density=f"{RES}/tables/matrix_density.parquet",
        layers=f"{RES}/tables/layer_curvature.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_matrices"),
    output:
        figure=report(
            f"{RES}/figures/hessian_matrices.png",
            caption="../report/hessian_matrices.rst",
            category="Curvature",
        ),
        layers=report(
            f"{RES}/figures/hessian_layers.png",
            caption="../report/hessian_layers.rst",
            category="Curvature",
        ),
        vectors=vector_copies(f"{RES}/figures/hessian_matrices.png",
                              f"{RES}/figures/hessian_layers.png"),
    params:
        plots=as_json(config["plots"]),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_matrices.log",
    shell:
        "python -m landscape plot-matrices --matrices {input.matrices} --density {input.density}"
        " --layers {input.layers} --runs {input.runs} --params {params.plots:q}"
        " --out {output.figure} --out-layers {output.layers} > {log} 2>&1"
