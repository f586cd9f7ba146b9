"""The one runner of every registered measurement (``landscape.registry``).

A measurement module declares ``STAGE`` and defines ``measure(job) -> {table: DataFrame}``; this
module gives it its command line (``--in NAME=PATH``, ``--out TABLE=PATH``, ``--file KEY=PATH``,
``--job KEY=VALUE``, ``--params``, ``--device``), and owns what every stage used to repeat:
loading the run's model (a diverged run is skipped: every table is written empty with the
reason, which ``collect-skipped`` reports), the prepared data, the seeded evaluation subsets in
the model's memory layout, the device, and the writes: tables are only written after
``measure`` returned all of them, each atomically, so a failure leaves no output behind.
"""

from __future__ import annotations

import json
from functools import cached_property

from ..errors import UserError
from ..registry import by_module
from ._common import section, skip_reason, write_skipped


class Skip(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised by ``measure`` (or ``Job.model``) when the job's subject must not be measured;
    the runner writes every table empty with ``reason`` and ``run``, and every file output as
    ``{"kind": "skipped", "run", "skipped": reason}`` (checksummed), which readers pass on."""

    def __init__(self, reason: str, run: str):
        super().__init__(reason)
        self.reason, self.run = reason, run


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def add_arguments(p, module) -> None:
    """The command line of a registered measurement (the same for every one)."""
    m = by_module(module.__name__.rsplit(".", 1)[-1])
    names = ", ".join(m.inputs) or "none"
    p.add_argument("--in", dest="inputs", action="append", metavar="NAME=PATH",
                   help=f"an input (this stage reads: {names})")
    p.add_argument("--out", dest="outputs", action="append", metavar="TABLE=PATH",
                   help=f"an output table (this stage writes: {', '.join(m.tables)})")
    if m.files:
        p.add_argument("--file", dest="files", action="append", metavar="KEY=PATH",
                       help=f"an output file (this stage writes: {', '.join(m.files)})")
    p.add_argument("--job", dest="wildcards", action="append", metavar="KEY=VALUE",
                   help="the job's key (e.g. run=…, shard=0, pair=…)")
    p.add_argument("--params", default="{}",
                   help=f"JSON of the config's `{m.section}` section (its keys this stage uses)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-progress", action="store_true")


class Job:
    """What ``measure`` gets: the stage's config section (schema defaults filled in), its inputs,
    output file paths, job key, device, and lazily loaded model, data and evaluation subsets."""

    def __init__(self, module, args):
        self.stage = by_module(module.__name__.rsplit(".", 1)[-1])
        self.params = (section(args.params, *self.stage.section.split("."))
                       if self.stage.section
                       else json.loads(args.params))
        self.inputs = _pairs(args.inputs, "--in")
        self.outputs = _pairs(args.outputs, "--out")
        self.files = _pairs(getattr(args, "files", None), "--file")
        self.key = _pairs(args.wildcards, "--job")
        self.progress = not args.no_progress
        self._device_arg = args.device
        self.meta: dict = {}  # metadata stored with every table ({"options": ..., ...})
        self.table_meta: dict[str, dict] = {}  # per-table metadata (overrides ``meta``)
        missing = ([f"--in {i}" for i in self.stage.inputs
                    if i not in self.inputs and i not in self.stage.conditions]
                   + [f"--out {t}" for t in self.stage.tables if t not in self.outputs]
                   + [f"--file {f}" for f in self.stage.files if f not in self.files])
        extra = [t for t in self.outputs if t not in self.stage.tables]
        if missing or extra:
            raise UserError(f"{self.stage.command}: missing {missing}, unknown outputs {extra}; "
                            f"it reads {list(self.stage.inputs)} and writes "
                            f"{list(self.stage.tables)}")

    @cached_property
    def device(self):
        from ..evaluate import resolve_device

        return resolve_device(self._device_arg)

    def model(self, name: str = "checkpoint", skip: bool = True, device=None):
        """(model in eval mode on the device, or on ``device``, meta) of checkpoint input
        ``name``; a diverged run raises ``Skip`` unless ``skip`` is False."""
        from ..checkpoints import load_model

        model, meta = load_model(self.inputs[name], device or self.device)
        reason = skip_reason(meta) if skip else None
        if reason:
            raise Skip(reason, meta["run"])
        return model, meta

    @cached_property
    def data(self):
        """(train, test, fingerprint) of the prepared data."""
        from ..data import load_prepared

        return load_prepared(self.inputs["data"])

    def subset(self, split: str, size, seed: int):
        """(seeded stratified subset of ``split``, its eval_set label); a size of None or at
        least the split's size is the whole split (``landscape.data.named_eval_subset``)."""
        from ..data import SPLITS, DataError, named_eval_subset

        if split not in SPLITS:
            raise DataError(f"Unknown split {split!r}. Supported splits are {list(SPLITS)}.")
        train, test, _ = self.data
        return named_eval_subset(train if split == "train" else test, split, size, seed)

    def table(self, name: str):
        """Gathered table ``name`` (input ``table:<name>``), verified."""
        from ..tables import read_table

        return read_table(self.inputs[f"table:{name}"], name)


def run(module, args) -> None:
    from ..io import save_verified
    from ..tables import write_table

    job = Job(module, args)
    try:
        frames = module.measure(job)
    except Skip as skip:
        write_skipped(job.outputs, job.stage.command, skip.run, skip.reason)
        for path in job.files.values():  # a file output says it was skipped, and why
            save_verified(path, {"kind": "skipped", "run": skip.run, "skipped": skip.reason})
        return
    if set(frames) != set(job.stage.tables):
        raise RuntimeError(f"{job.stage.module}.measure returned tables {sorted(frames)}; its "
                           f"STAGE declares {sorted(job.stage.tables)}")
    for name in job.stage.tables:  # every table is ready: now write them
        write_table(frames[name], name, job.outputs[name],
                    extra_meta=job.table_meta.get(name, job.meta) or None)
