"""A report to publish from: ``results/report.tex`` (and ``report.pdf`` where a TeX engine is
installed), generated from the same findings, tables and figures as the findings page.

The report is organised by the questions the study asks, not by pipeline stage. Each section
states its method in a few sentences with the references it rests on (documentation, written
here once: no number is ever typed in it), then lists the generated findings that answer it
(the ``findings`` table, verbatim), the tables (booktabs) and the figures (the vector PDF copies
when ``plots.formats`` has ``pdf``, else the PNGs). A finding goes to the section of its stage
(curvature findings split by what they are about: how curvature evolves and where it sits, or
how it relates to generalisation); figures go by the report category their plot stage declares.

Text is LaTeX-escaped; the non-ASCII characters the findings and captions use (Greek letters,
×, ≤, subscripts, …) are declared in the preamble with ``\\DeclareUnicodeCharacter``, so pdfLaTeX
with the standard fonts compiles the file; any other character is replaced by ``?`` and listed
in ``unmapped`` (the tests require that list to be empty for the smoke study).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

# Unicode characters → what pdfLaTeX typesets (math mode where needed)
UNICODE = {
    "α": r"\ensuremath{\alpha}", "β": r"\ensuremath{\beta}", "γ": r"\ensuremath{\gamma}",
    "δ": r"\ensuremath{\delta}", "ε": r"\ensuremath{\varepsilon}", "η": r"\ensuremath{\eta}",
    "θ": r"\ensuremath{\theta}", "κ": r"\ensuremath{\kappa}", "λ": r"\ensuremath{\lambda}",
    "μ": r"\ensuremath{\mu}", "ν": r"\ensuremath{\nu}", "π": r"\ensuremath{\pi}",
    "ρ": r"\ensuremath{\rho}", "σ": r"\ensuremath{\sigma}", "τ": r"\ensuremath{\tau}",
    "φ": r"\ensuremath{\phi}", "χ": r"\ensuremath{\chi}", "ψ": r"\ensuremath{\psi}",
    "ω": r"\ensuremath{\omega}", "Δ": r"\ensuremath{\Delta}", "Σ": r"\ensuremath{\Sigma}",
    "Ψ": r"\ensuremath{\Psi}", "Φ": r"\ensuremath{\Phi}", "Θ": r"\ensuremath{\Theta}",
    "Λ": r"\ensuremath{\Lambda}", "Ω": r"\ensuremath{\Omega}",
    "±": r"\ensuremath{\pm}", "×": r"\ensuremath{\times}", "·": r"\ensuremath{\cdot}",
    "−": r"\ensuremath{-}", "≈": r"\ensuremath{\approx}", "≤": r"\ensuremath{\le}",
    "≥": r"\ensuremath{\ge}", "≠": r"\ensuremath{\ne}", "∈": r"\ensuremath{\in}",
    "→": r"\ensuremath{\to}", "←": r"\ensuremath{\leftarrow}", "↔": r"\ensuremath{\leftrightarrow}",
    "∞": r"\ensuremath{\infty}", "√": r"\ensuremath{\surd}", "∇": r"\ensuremath{\nabla}",
    "∂": r"\ensuremath{\partial}", "‖": r"\ensuremath{\|}", "⟨": r"\ensuremath{\langle}",
    "⟩": r"\ensuremath{\rangle}", "∑": r"\ensuremath{\sum}", "∫": r"\ensuremath{\int}",
    "≪": r"\ensuremath{\ll}", "≫": r"\ensuremath{\gg}", "∼": r"\ensuremath{\sim}",
    "∝": r"\ensuremath{\propto}", "⊤": r"\ensuremath{\top}", "ᵀ": r"\ensuremath{^{\top}}",
    "★": r"\ensuremath{\star}", "∗": r"\ensuremath{\ast}", "°": r"\ensuremath{^\circ}",
    "₀": r"\ensuremath{_0}", "₁": r"\ensuremath{_1}", "₂": r"\ensuremath{_2}",
    "₃": r"\ensuremath{_3}", "₄": r"\ensuremath{_4}", "ₖ": r"\ensuremath{_k}",
    "ᵢ": r"\ensuremath{_i}", "ⱼ": r"\ensuremath{_j}", "ₘ": r"\ensuremath{_m}",
    "ₙ": r"\ensuremath{_n}", "ₜ": r"\ensuremath{_t}", "⁰": r"\ensuremath{^0}",
    "¹": r"\ensuremath{^1}", "²": r"\ensuremath{^2}", "³": r"\ensuremath{^3}",
    "⁻": r"\ensuremath{^-}", "⁺": r"\ensuremath{^+}", "½": r"\ensuremath{\tfrac12}",
    "–": "--", "—": "---", "‘": "`", "’": "'", "“": "``", "”": "''", "…": r"\ldots{}",
    "é": r"\'e", "è": r"\`e", "ö": r'\"o', "ü": r'\"u', "ä": r'\"a', "ç": r"\c{c}",
    "ł": r"\l{}", "É": r"\'E", "\u00a0": "~", "✓": "yes", "✗": "no",
}
SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
           "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
           "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
           "|": r"\ensuremath{|}", '"': "''"}


@dataclass
class Escaper:
    """LaTeX-escapes text; remembers characters it had to replace by ``?``."""

    unmapped: set[str] = field(default_factory=set)

    def __call__(self, text) -> str:
        out = []
        for ch in str(text):
            if ch in SPECIAL:
                out.append(SPECIAL[ch])
            elif ord(ch) < 128 or ch in UNICODE:
                out.append(ch)
            else:
                self.unmapped.add(ch)
                out.append("?")
        return "".join(out)

    def rst(self, text: str) -> str:
        """A caption in reStructuredText's inline markup (``code``, **bold**, *emphasis*)."""
        parts = re.split(r"(``.+?``|\*\*.+?\*\*|\*[^*\s][^*]*?\*)", " ".join(text.split()))
        out = []
        for p in parts:
            if p.startswith("``") and p.endswith("``") and len(p) > 4:
                out.append(r"\texttt{" + self(p[2:-2]) + "}")
            elif p.startswith("**") and p.endswith("**") and len(p) > 4:
                out.append(r"\textbf{" + self(p[2:-2]) + "}")
            elif p.startswith("*") and p.endswith("*") and len(p) > 2:
                out.append(r"\emph{" + self(p[1:-1]) + "}")
            else:
                out.append(self(p))
        return "".join(out)


REFERENCES = {
    "keskar2017": "N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang. On "
                  "large-batch training for deep learning: generalization gap and sharp minima. "
                  "ICLR, 2017.",
    "jastrzebski2017": "S. Jastrzebski, Z. Kenton, D. Arpit, N. Ballas, A. Fischer, Y. Bengio "
                       "and A. Storkey. Three factors influencing minima in SGD. arXiv:1711.04623, "
                       "2017.",
    "dinh2017": "L. Dinh, R. Pascanu, S. Bengio and Y. Bengio. Sharp minima can generalize for "
                "deep nets. ICML, 2017.",
    "li2018": "H. Li, Z. Xu, G. Taylor, C. Studer and T. Goldstein. Visualizing the loss "
              "landscape of neural nets. NeurIPS, 2018.",
    "ghorbani2019": "B. Ghorbani, S. Krishnan and Y. Xiao. An investigation into neural net "
                    "optimization via Hessian eigenvalue density. ICML, 2019.",
    "yao2020": "Z. Yao, A. Gholami, K. Keutzer and M. W. Mahoney. PyHessian: neural networks "
               "through the lens of the Hessian. IEEE Big Data, 2020.",
    "cohen2021": "J. M. Cohen, S. Kaur, Y. Li, J. Z. Kolter and A. Talwalkar. Gradient descent "
                 "on neural networks typically occurs at the edge of stability. ICLR, 2021.",
    "martens2020": "J. Martens. New insights and perspectives on the natural gradient method. "
                   "JMLR 21(146), 2020.",
    "jiang2020": "Y. Jiang, B. Neyshabur, H. Mobahi, D. Krishnan and S. Bengio. Fantastic "
                 "generalization measures and where to find them. ICLR, 2020.",
    "kwon2021": "J. Kwon, J. Kim, H. Park and I. K. Choi. ASAM: adaptive sharpness-aware "
                "minimization for scale-invariant learning of deep neural networks. ICML, 2021.",
    "foret2021": "P. Foret, A. Kleiner, H. Mobahi and B. Neyshabur. Sharpness-aware "
                 "minimization for efficiently improving generalization. ICLR, 2021.",
    "dziugaite2017": "G. K. Dziugaite and D. M. Roy. Computing nonvacuous generalization bounds "
                     "for deep (stochastic) neural networks with many more parameters than "
                     "training data. UAI, 2017.",
    "garipov2018": "T. Garipov, P. Izmailov, D. Podoprikhin, D. Vetrov and A. G. Wilson. Loss "
                   "surfaces, mode connectivity, and fast ensembling of DNNs. NeurIPS, 2018.",
    "draxler2018": "F. Draxler, K. Veschgini, M. Salmhofer and F. Hamprecht. Essentially no "
                   "barriers in neural network energy landscape. ICML, 2018.",
    "frankle2020": "J. Frankle, G. K. Dziugaite, D. M. Roy and M. Carbin. Linear mode "
                   "connectivity and the lottery ticket hypothesis. ICML, 2020.",
    "entezari2022": "R. Entezari, H. Sedghi, O. Saukh and B. Neyshabur. The role of permutation "
                    "invariance in linear mode connectivity of neural networks. ICLR, 2022.",
    "ainsworth2023": "S. K. Ainsworth, J. Hayase and S. Srinivasa. Git Re-Basin: merging models "
                     "modulo permutation symmetries. ICLR, 2023.",
    "jordan2023": "K. Jordan, H. Sedghi, O. Saukh, R. Entezari and B. Neyshabur. REPAIR: "
                  "REnormalizing Permuted Activations for Interpolation Repair. ICLR, 2023.",
    "hochreiter1997": "S. Hochreiter and J. Schmidhuber. Flat minima. Neural Computation 9(1), "
                      "1997.",
}

# The questions of the study: title, method (documentation with citations: no numbers), which
# findings (stage, or (stage, key prefix)) and which figure categories/files answer it.
QUESTIONS = [
    {"id": "sgd", "title": "Why does SGD find minima that generalise?",
     "method": r"""Every run of the study is a network trained by mini-batch SGD (or the optimiser
the study names) from its own seed, with the learning rate $\eta$ and batch size $B$ varied on a
grid. The gradient noise of SGD grows with $\eta/B$, and the hypothesis under test is that more
noise steers training towards flatter minima that generalise better
\cite{keskar2017,jastrzebski2017,hochreiter1997}. The generalisation gap is the test error minus
the training error of the final weights; accuracies are on the whole training and test sets.""",
     "findings": ["training", ("curvature", "lambda_max_vs_"), ("curvature", "sam"),
                  ("curvature", "asam")],
     # said only when the study has such runs (a finding with one of these key prefixes)
     "method_if": {("curvature", "sam"): "SAM", ("curvature", "asam"): "SAM"},
     "categories": ["Training"], "files": []},
    {"id": "optimisation", "title": "How does the geometry shape optimisation?",
     "method": r"""The loss is sliced along one- and two-dimensional subspaces through the trained
weights: filter-normalised random directions \cite{li2018}, the plane of the first two principal
directions of the optimisation path, and the plane of the Hessian's top two eigenvectors. The
Hessian of the mean training loss is probed by exact Hessian-vector products: its extreme
eigenvalues by Lanczos iteration with full reorthogonalisation, its trace by Hutchinson and
Hutch++ estimators and its spectral density by stochastic Lanczos quadrature
\cite{ghorbani2019,yao2020}; the largest eigenvalue $\lambda_{\max}$ is followed along training
and compared with the stability threshold $2/\eta$ of gradient descent and $(2+2\beta)/\eta$ of
heavy-ball momentum \cite{cohen2021}. The generalised Gauss--Newton matrix and the empirical
Fisher are compared with the Hessian on the same data \cite{martens2020}, and the Hessian's
diagonal blocks locate the curvature by layer.""",
     "findings": ["slices", ("curvature", "spread"), ("curvature", "edge_of_stability"),
                  ("curvature", "matrices"), ("curvature", "layers"),
                  ("curvature", "eigen")],
     "categories": ["Loss landscape"],
     "files": ["hessian_sharpness", "hessian_density", "hessian_matrices", "hessian_layers"]},
    {"id": "generalisation", "title": "How do curvature and flatness relate to generalisation?",
     "method": r"""Each flatness and norm measure is rank-correlated with the generalisation gap
over the runs (Kendall's $\tau$ with a bootstrap interval and Holm-adjusted $p$-values), and,
following \cite{jiang2020}, by the granulated coefficient $\Psi$ that holds all hyper-parameters
but one fixed. The measures are $\lambda_{\max}$ and the trace of the Hessian, the
$\varepsilon$-sharpness of \cite{keskar2017}, the adaptive sharpness of \cite{kwon2021} (worst and
average case), a PAC-Bayes flatness from the largest weight-noise scale that keeps the training
loss within a bound \cite{dziugaite2017,jiang2020}, and parameter norms. Reparametrisations can
make a minimum arbitrarily sharp without changing its function \cite{dinh2017}, which is why the
scale-invariant (adaptive) measures are included.""",
     "findings": ["generalisation", ("curvature", "tau_")],
     "categories": ["Generalisation"], "files": ["hessian_generalisation"]},
    {"id": "connectivity", "title": "Are the minima connected?",
     "method": r"""For pairs of runs the loss is evaluated along the straight line between their
weights, along the line to the second network after its hidden units are permuted to match the
first by weight matching or activation matching \cite{ainsworth2023,entezari2022}, along that
line with every unit's activation statistics renormalised (REPAIR, \cite{jordan2023}), and along
a quadratic Bézier curve whose bend is trained \cite{garipov2018,draxler2018}. The barrier is the
largest rise of the loss above the straight line between the endpoint values. Spawning
\cite{frankle2020} trains two children from one run's snapshot at step $k$ with different data
orders and measures the linear barrier between them.""",
     "findings": ["connectivity"], "categories": ["Connectivity"], "files": []},
    {"id": "robustness", "title": "How robust are the solutions?",
     "method": r"""The weights are perturbed by Gaussian noise of absolute scale $\sigma$ and of
scale relative to each weight's magnitude, with several independent draws per level; the
accuracy against $\sigma$ shows how far the minimum's basin extends. The same perturbations give
the PAC-Bayes flatness used above \cite{dziugaite2017}.""",
     "findings": ["robustness"], "categories": ["Robustness"], "files": []},
    {"id": "reference", "title": "The original assignment, reproduced",
     "method": r"""The study's numbers beside those of the published study named in
\texttt{report.reference} (same quantities, computed from this study's tables).""",
     "findings": ["reference"], "categories": [], "files": []},
]


# method sentences said only when the study has the runs they describe (QUESTIONS "method_if")
METHOD_IF = {"SAM": r"""Where the study also trains with sharpness-aware minimisation
\cite{foret2021} or its adaptive form \cite{kwon2021}, flatness becomes an intervention: each
such run is compared with the SGD run of the same model, learning rate, batch size and seed,
separately for each radius $\rho$ of its ascent step; where the study has several radii, the
runs of a larger radius are also compared with those of a smaller one."""}


def question_of(stage: str, key: str) -> str:
    """The question a finding answers: the first entry of ``QUESTIONS`` that names its stage
    with a key prefix it matches; otherwise the first that names the stage alone."""
    for q in QUESTIONS:
        for f in q["findings"]:
            if isinstance(f, tuple) and f[0] == stage and key.startswith(f[1]):
                return q["id"]
    for q in QUESTIONS:
        if stage in q["findings"]:
            return q["id"]
    return "optimisation" if stage == "curvature" else "sgd"


def figure_question(stem: str, category: str) -> str | None:
    for q in QUESTIONS:
        if stem in q["files"]:
            return q["id"]
    for q in QUESTIONS:
        if category in q["categories"]:
            return q["id"]
    return None


@dataclass
class Figure:
    path: str  # relative to the report's folder
    caption: str  # reStructuredText (rendered)
    category: str
    run: str | None = None  # per-run figures go to the appendix


def booktabs(df: pd.DataFrame, esc: Escaper, caption: str, digits: int = 3,
             label: str = "") -> str:
    """A DataFrame as a booktabs table (numbers to ``digits`` significant figures)."""
    def cell(v) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.{digits}g}"
        return esc(v)

    cols = "".join("l" if df[c].dtype == object else "r" for c in df.columns)
    head = " & ".join(esc(c) for c in df.columns)
    body = "\n".join(" & ".join(cell(v) for v in row) + r" \\"
                     for row in df.itertuples(index=False))
    lab = f"\\label{{{label}}}" if label else ""
    return (f"\\begin{{table}}[H]\\centering\\footnotesize\\caption{{{esc(caption)}}}{lab}\n"
            f"\\resizebox{{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}}{{!}}{{"
            f"\\begin{{tabular}}{{{cols}}}\n\\toprule\n{head} \\\\\n\\midrule\n{body}\n"
            "\\bottomrule\n\\end{tabular}}\n\\end{table}\n")


def figure_tex(fig: Figure, esc: Escaper) -> str:
    return ("\\begin{figure}[H]\\centering\n"
            f"\\includegraphics[width=\\linewidth,height=0.55\\textheight,keepaspectratio]"
            f"{{{fig.path}}}\n\\caption{{{esc.rst(fig.caption)}}}\n\\end{{figure}}\n")


PREAMBLE = r"""\documentclass[11pt,a4paper]{article}
\usepackage[utf8]{inputenc}
\usepackage[margin=2.2cm]{geometry}
\usepackage{amsmath,amssymb}
\usepackage{graphicx}
\usepackage{booktabs}
\usepackage{float}
\usepackage[font=small]{caption}
\usepackage[hidelinks]{hyperref}
"""


def run_summary(runs: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("run", "optimizer", "lr", "batch_size", "seed", "status", "train_acc",
                        "test_acc", "gap_error") if c in runs]
    return runs[cols].sort_values("run").reset_index(drop=True)


def document(findings: pd.DataFrame, runs: pd.DataFrame, figures: list[Figure], title: str,
             study: str, tables: dict[str, pd.DataFrame] | None = None,
             esc: Escaper | None = None) -> str:
    """The whole report. ``findings``: the findings table (order, stage, key, text);
    ``tables``: extra summary tables by question id → [(caption, DataFrame)]."""
    esc = esc or Escaper()
    tables = tables or {}
    decl = "".join(f"\\DeclareUnicodeCharacter{{{ord(ch):04X}}}{{{tex}}}\n"
                   for ch, tex in UNICODE.items())
    parts = [PREAMBLE, decl, f"\\title{{{esc(title)}}}", r"\date{\today}",
             r"\author{Generated by \texttt{landscape} from the tables of this study}",
             r"\begin{document}", r"\maketitle",
             r"\begin{abstract}" + esc(study) + ". Every number and statement in this report "
             "is computed from the Parquet tables of the run that made it "
             r"(\texttt{results/tables}); the method paragraphs are documentation and carry "
             r"no results.\end{abstract}", r"\tableofcontents"]
    by_q: dict[str, list[str]] = {}
    extra: dict[str, list[str]] = {}
    for row in findings.sort_values("order").itertuples():
        q = question_of(row.stage, row.key)
        by_q.setdefault(q, []).append(row.text)
        for (stage, prefix), name in next(x for x in QUESTIONS if x["id"] == q).get(
                "method_if", {}).items():
            if row.stage == stage and row.key.startswith(prefix) and \
                    METHOD_IF[name] not in extra.get(q, []):
                extra.setdefault(q, []).append(METHOD_IF[name])
    figs_by_q: dict[str, list[Figure]] = {}
    per_run: list[Figure] = []
    for f in figures:
        if f.run is not None:
            per_run.append(f)
            continue
        q = figure_question(Path(f.path).stem, f.category)
        figs_by_q.setdefault(q or "optimisation", []).append(f)
    cited: list[str] = []
    for q in QUESTIONS:
        items, figs, tabs = by_q.get(q["id"], []), figs_by_q.get(q["id"], []), \
            tables.get(q["id"], [])
        if not (items or figs or tabs):
            continue
        method = " ".join([q["method"], *extra.get(q["id"], [])])
        cited += re.findall(r"\\cite\{([^}]*)\}", method)
        parts.append(f"\\section{{{esc(q['title'])}}}")
        parts.append(r"\paragraph{Method.} " + " ".join(method.split()))
        if items:
            parts.append(r"\paragraph{Findings.}")
            parts.append("\\begin{itemize}\n" + "\n".join(f"\\item {esc(t)}" for t in items)
                         + "\n\\end{itemize}")
        for caption, df in tabs:
            if df is not None and not df.empty:
                parts.append(booktabs(df, esc, caption))
        parts += [figure_tex(f, esc) for f in figs]
    if per_run:
        parts.append(r"\appendix")
        parts.append(r"\section{Per-run figures}")
        parts += [figure_tex(f, esc) for f in per_run]
    keys = []
    for group in cited:
        for k in group.split(","):
            if k.strip() not in keys:
                keys.append(k.strip())
    parts.append(r"\begin{thebibliography}{99}")
    parts += [f"\\bibitem{{{k}}} {esc(REFERENCES[k])}" for k in keys]
    parts.append(r"\end{thebibliography}")
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"


def compile_pdf(tex: Path, pdf: Path, engine: str = "pdflatex", timeout: float = 300) -> dict:
    """Compile ``tex`` (figures relative to its folder) twice (contents, references) in a
    scratch folder; move the PDF to ``pdf`` only when the engine succeeded. Returns the page
    count and the figure files the log says were included."""
    import shutil
    import subprocess
    import tempfile

    from ..errors import UserError

    exe = shutil.which(engine)
    if exe is None:
        raise UserError(f"{engine} is not installed (Debian: apt-get install "
                        "texlive-latex-recommended); report.pdf: never skips the PDF")
    tex = Path(tex).resolve()
    with tempfile.TemporaryDirectory(prefix="landscape-tex-") as tmp:
        for _ in range(2):
            out = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error",
                                  f"-output-directory={tmp}", str(tex)], cwd=tex.parent,
                                 capture_output=True, text=True, timeout=timeout)
            if out.returncode != 0:
                log = Path(tmp, tex.with_suffix(".log").name)
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else out.stdout
                raise UserError(f"{engine} failed on {tex} (exit {out.returncode}):\n{tail}")
        log = Path(tmp, tex.with_suffix(".log").name).read_text(errors="replace")
        m = re.search(r"Output written on .*?\((\d+) pages?", log.replace("\n", ""))
        included = list(dict.fromkeys(re.findall(r"<(?:use )?(?:\./)?([^<>\s,]+\.(?:pdf|png))",
                                                 log.replace("\n", ""))))
        from ..io import atomic_path

        with atomic_path(pdf) as dst:
            shutil.copyfile(Path(tmp, tex.with_suffix(".pdf").name), dst)
    return {"pages": int(m.group(1)) if m else 0, "figures": included}
