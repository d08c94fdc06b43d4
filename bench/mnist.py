"""Binarised MNIST: train the shipped models, estimate test log-likelihoods with AIS, and
write docs/results.md with the published figure beside each measured one.

    python bench/mnist.py            # the full runs, with the settings of docs/results.md's rows
                                     # (about seven hours on 2 cores: CD-25 an hour, the DBM's
                                     # 500 joint epochs about four)
    python bench/mnist.py --quick    # reduced settings, a few minutes: checks the pipeline,
                                     # not the published numbers
    python bench/mnist.py --only rbm-pcd,dbm
    python bench/mnist.py --only dbm --epochs 50        # a shorter run than the default
    python bench/mnist.py --only dbm --set joint.k=5 --checkpoint-dir DIR   # other fit options
    python bench/mnist.py --only dbm --train-on train+valid   # 60,000 training images: how
                                     # docs/results.md's DBM row was run

Models: rbm-cd25, rbm-pcd (models/rbm.gdl, 500 hidden units), dbm (models/dbm.gdl,
784-500-1000: greedy pretraining, then variational PCD) and nade (models/nade.gdl, 500
hidden units, maximum likelihood with Adam).

Each model's result is kept in docs/results.json, and docs/results.md is written from all
of them: a run of one model replaces its own row and keeps the others.

Data: ../shared/data/binarized_mnist.npz (50,000 train / 10,000 valid / 10,000 test); the
models train on the training set (`--train-on train+valid` adds the validation images). Test
log-likelihoods of the energy models are -F(v) - log Z with log Z from AIS (100 runs, the
~14,500-temperature schedule, base-rate model from the training data) and, as a check from
the other side, reverse AIS from the fit's persistent chains (PCD, DBM) or from training
images (CD). For the DBM the per-image value is the mean-field variational lower bound, as
in the DBM literature. NADE's log-likelihood is exact (a product of its conditionals). The
note of each energy model's row gives the same measure on the first 10,000 training images:
the difference from the test figure is what the fit does not generalise.
"""
from __future__ import annotations

import argparse
import copy
import inspect
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import set_blas_threads  # noqa: E402

set_blas_threads(sys.argv)

import numpy as np  # noqa: E402

import gdsl  # noqa: E402
from gdsl.runtime.ais import standard_schedule  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"
PUBLISHED = {"rbm-cd25": (-86.34, "Salakhutdinov & Murray 2008 (AIS)"),
             "rbm-pcd": (-86.34, "RBM 500 hidden, CD-25 figure of Salakhutdinov & Murray 2008"),
             "dbm": (-84.62, "Salakhutdinov & Hinton 2009 (AIS, variational bound)"),
             "nade": (-88.86, "Larochelle & Murray 2011")}

FULL = {
    "rbm-cd25": dict(method="cd", k=25, lr=0.05, epochs=200, batch_size=100, momentum=0.5, weight_decay=2e-4,
                     lr_schedule="linear"),
    "rbm-pcd": dict(method="pcd", k=1, lr=0.05, epochs=1000, batch_size=100, momentum=0.5, weight_decay=2e-4,
                    lr_schedule="linear"),
    "dbm": dict(greedy=dict(lr=0.05, epochs=30, batch_size=100, momentum=0.5, weight_decay=2e-4),
                joint=dict(method="pcd", lr=0.05, epochs=500, batch_size=100, chains=100, mf_iters=10,
                           weight_decay=2e-4, lr_schedule="linear")),
    "nade": dict(method="ml", optimizer="adam", lr=1e-3, epochs=30, batch_size=100),
}
QUICK = {
    "rbm-cd25": dict(method="cd", k=25, lr=0.05, epochs=1, batch_size=100, momentum=0.5, weight_decay=2e-4),
    "rbm-pcd": dict(method="pcd", k=1, lr=0.05, epochs=5, batch_size=100, momentum=0.5, weight_decay=2e-4),
    "dbm": dict(greedy=dict(lr=0.05, epochs=2, batch_size=100, momentum=0.5, weight_decay=2e-4),
                joint=dict(method="pcd", lr=0.005, epochs=1, batch_size=100, chains=100, mf_iters=5,
                           weight_decay=2e-4)),
    "nade": dict(method="ml", optimizer="adam", lr=1e-3, epochs=1, batch_size=100),
}
DIRECTED = ("nade",)  # exact log-likelihoods: no log Z to estimate
CHECKPOINT_EVERY = 5


def train(name: str, settings: dict, train_x: np.ndarray, seed: int, checkpoint: Path | None):
    """Train from scratch, or resume the final fit from `checkpoint` when that file exists (a finished
    checkpoint resumes with nothing left to do: the model is only evaluated). Returns the model and
    the seconds the training took, over all legs of a resumed run (nan if the earlier legs' time is
    unknown)."""
    m = fresh_model(name, seed)
    final = settings.get("joint", settings)
    resume = checkpoint if checkpoint is not None and checkpoint.exists() else None
    clock = checkpoint.with_suffix(".seconds") if checkpoint is not None else None
    earlier = 0.0 if resume is None else float(clock.read_text()) if clock.exists() else float("nan")
    t = time.perf_counter()

    def note_time(model, record):
        # beside each checkpoint, the training time it holds: a resumed run adds its own to it
        if clock is not None and (record["epoch"] % CHECKPOINT_EVERY == 0 or record["epoch"] == final["epochs"]):
            clock.write_text(f"{earlier + time.perf_counter() - t:.1f}\n")

    given = {"x" if name in DIRECTED else "v": train_x}
    options = dict(progress=True, checkpoint=checkpoint, checkpoint_every=CHECKPOINT_EVERY, resume=resume,
                   callback=note_time, **final)
    if name not in DIRECTED:  # the directed learners measure only what they are asked to: no monitor option
        options["monitor"] = None
    if "greedy" in settings and resume is None:
        m.fit(given, method="greedy", progress=True, **settings["greedy"])
    m.fit(given, **options)
    return m, earlier + time.perf_counter() - t


def fresh_model(name: str, seed: int = 0):
    if name.startswith("rbm"):
        return gdsl.load(ROOT / "models" / "rbm.gdl", nh=500, seed=seed)
    if name == "nade":
        return gdsl.load(ROOT / "models" / "nade.gdl", nh=500, seed=seed)
    return gdsl.load(ROOT / "models" / "dbm.gdl", n1=500, n2=1000, seed=seed)


def evaluate(name, m, train_x, test_x, runs, betas):
    t = time.perf_counter()
    if name in DIRECTED:
        test_ll = float(np.mean(m.log_prob({"x": test_x})))  # exact: a product of the conditionals
        return dict(log_z=None, log_z_sd=None, reverse_log_z=None, reverse_start=None, test_ll=test_ll,
                    test_ll_reverse=None, eval_seconds=time.perf_counter() - t)
    forward = m.log_partition("ais", runs=runs, betas=betas, data={"v": train_x}, progress=True)
    # where the forward runs ended: a share of pixels on far from the data's means they measured
    # another basin than the data's (docs/evaluation.md, the full-size DBM)
    forward_on = float(np.mean(m.last_ais["states"]["v"]))
    # reverse chains start at the persistent chains of the fit where there are some: on a DBM, 1000
    # sweeps from training images do not reach the model (docs/evaluation.md)
    start = "chains" if m._persistent_chains() is not None else "data"
    reverse = m.log_partition("reverse-ais", runs=runs, betas=betas, data={"v": train_x}, progress=True,
                              burn_in=1000, start=start)
    method = "bound" if name == "dbm" else "exact"  # the DBM's latents do not sum out: mean-field bound
    test_ll = float(np.mean(m.log_prob({"v": test_x}, log_z=forward.log_z, method=method)))
    low_ll = test_ll - (reverse.log_z - forward.log_z)  # the same values with the other log Z
    # the same measure on as many training images: the difference is what the fit does not generalise
    train_ll = float(np.mean(m.log_prob({"v": train_x[:len(test_x)]}, log_z=forward.log_z, method=method)))
    return dict(log_z=forward.log_z, log_z_sd=forward.sd, reverse_log_z=reverse.log_z, reverse_start=start,
                test_ll=test_ll, test_ll_reverse=low_ll, train_ll=train_ll, train_ll_images=len(test_x),
                forward_pixels_on=forward_on,
                data_pixels_on=float(np.mean(train_x)), eval_seconds=time.perf_counter() - t)


def merged_rows(new_rows, store: Path) -> list:
    """The stored results with this run's models replaced, in a fixed model order."""
    stored = json.loads(store.read_text()) if store.exists() else {}
    stored.update({r["name"]: r for r in new_rows})
    store.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    return [stored[name] for name in PUBLISHED if name in stored]


def write_table(rows, quick: bool, path: Path) -> None:
    mode = "reduced settings: a check of the pipeline, not of the published numbers" if quick \
        else "the settings listed per model"
    lines = ["# Results on binarised MNIST", "",
             f"Written by `python bench/mnist.py{' --quick' if quick else ''}` ({mode}) on a 2-core machine.",
             "Each row is the last run of that model (`--only` reruns one and keeps the others).",
             "Test log-likelihood in nats per image, higher is better; log Z by AIS (forward, 100 runs), with",
             "reverse AIS as the bound from the other side (the test log-likelihood it implies is",
             "given too: the truth should lie between the two). Reverse chains start at the fit's",
             "persistent chains or at training images (then 1000 sweeps), as the column says.", "",
             "| model | training | train time | log Z (AIS) | log Z (reverse AIS) | reverse start | test log p(x) | "
             "with reverse log Z | published | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        pub, src = PUBLISHED[r["name"]]
        if r["log_z"] is None:  # a directed model: exact log-likelihood, nothing estimated
            note = "; ".join(x for x in ("exact log-likelihood (a product of conditionals): no log Z",
                                         r.get("remark", "")) if x)
            lines.append(f"| {r['name']} | {r['settings']} | {r['train_seconds']:.0f} s | - | - | - | "
                         f"{r['test_ll']:.2f} | - | {pub} ({src}) | {note} |")
            continue
        parts = []
        gap = abs(r["reverse_log_z"] - r["log_z"])
        if gap > 1.0:
            parts.append(f"**unreliable**: forward and reverse AIS differ by {gap:.1f} nats, the chains did not mix; "
                         f"the truth lies between, or outside if neither reached the model")
        if "train_ll" in r:
            parts.append(f"the same measure gives {r['train_ll']:.2f} on the first {r['train_ll_images']:,} "
                         f"training images")
        if "forward_pixels_on" in r:
            parts.append(f"forward runs ended with {100 * r['forward_pixels_on']:.1f}% of pixels "
                         f"on (training images: {100 * r['data_pixels_on']:.1f}%)")
        parts.append(r.get("remark", ""))  # a remark added by hand to results.json
        note = "; ".join(x for x in parts if x)
        lines.append(f"| {r['name']} | {r['settings']} | {r['train_seconds']:.0f} s | {r['log_z']:.2f} "
                     f"± {r['log_z_sd']:.2f} | {r['reverse_log_z']:.2f} | {r.get('reverse_start', 'data')} | "
                     f"{r['test_ll']:.2f} | "
                     f"{r['test_ll_reverse']:.2f} | {pub} ({src}) | {note} |")
    lines += ["", "NADE's speed against a numpy implementation, and the VAE, are measured by "
              "`python bench/directed.py`: see [results-directed.md](results-directed.md).", ""]
    path.write_text("\n".join(lines) + kept_sections(path))


def kept_sections(path: Path) -> str:
    """The sections other benches append to the results file (from the first `## ` heading on):
    rewriting the table must not delete them."""
    if not path.exists():
        return ""
    old = path.read_text()
    at = old.find("\n## ")
    return old[at:].lstrip("\n").join(("\n", "")) if at >= 0 else ""


# what the bench passes to fit itself, and so cannot be --set
BENCH_OWNS = {"self", "model", "data", "method", "progress", "callback", "checkpoint", "checkpoint_every", "resume",
              "monitor", "validation", "greedy_options"}


def apply_overrides(settings: dict, overrides: list, directed: bool) -> None:
    """Apply `--set KEY=VALUE` to one model's settings: KEY is an option of `fit` (lr, k, epochs,
    mf_iters, ...), for the DBM prefixed by its stage (joint.lr, greedy.epochs). VALUE is read as
    JSON where it parses (0.1, 5, true) and kept as text otherwise (linear)."""
    from gdsl.runtime.dlearn import fit_directed
    from gdsl.runtime.greedy import fit_greedy
    from gdsl.runtime.learn import LearningMixin

    for text in overrides:
        key, sep, raw = text.partition("=")
        *stages, option = key.split(".")
        fit = fit_greedy if stages == ["greedy"] else fit_directed if directed else LearningMixin.fit
        known = set(inspect.signature(fit).parameters) - BENCH_OWNS
        target = settings
        for stage in stages:
            if not isinstance(target.get(stage), dict):
                raise SystemExit(f"--set {text}: this model has no stage {stage!r} "
                                 f"(stages: {', '.join(k for k, v in settings.items() if isinstance(v, dict)) or 'none'})")
            target = target[stage]
        if not sep or option not in known or any(isinstance(v, dict) for v in target.values()):
            raise SystemExit(f"--set {text}: write STAGE.OPTION=VALUE for the DBM (joint.lr=0.1, greedy.epochs=100) "
                             f"and OPTION=VALUE otherwise, with OPTION one of fit's: {', '.join(sorted(known))}")
        try:
            target[option] = json.loads(raw)
        except json.JSONDecodeError:
            target[option] = raw


def describe(settings: dict) -> str:
    if "greedy" in settings:
        g, j = settings["greedy"], settings["joint"]
        schedule = f" falling {j['lr_schedule']}ly" if j.get("lr_schedule") else ""
        return (f"greedy {g['epochs']} epochs/layer, then variational PCD {j['epochs']} epochs, "
                f"lr {j['lr']}{schedule}, mean-field {j['mf_iters']} iterations")
    if settings["method"] == "ml":
        return (f"maximum likelihood, Adam lr {settings['lr']:g}, {settings['epochs']} epochs, "
                f"batch {settings['batch_size']}")
    k = f"-{settings['k']}" if settings["method"] == "cd" else ""
    return f"{settings['method'].upper()}{k}, {settings['epochs']} epochs, lr {settings['lr']}, batch {settings['batch_size']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="rbm-cd25,rbm-pcd,dbm,nade")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--out", help="the table to write (default docs/results.md; bench/results-quick.md with --quick, "
                                   "so that a quick check never replaces the real table)")
    ap.add_argument("--table-only", action="store_true", help="rewrite the table from docs/results.json, run nothing")
    ap.add_argument("--epochs", type=int, help="train the chosen models for this many epochs (joint epochs for the DBM)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change one training setting of the chosen models (repeatable): an option of fit, "
                         "for the DBM prefixed by its stage, e.g. --set joint.lr=0.1 --set greedy.epochs=100, "
                         "or --set k=5 for an RBM; the row's settings name the changes. Use a checkpoint "
                         "directory of its own: a finished checkpoint is evaluated, not retrained")
    ap.add_argument("--train-on", choices=("train", "train+valid"), default="train",
                    help="the images to train on: the 50,000 of the training set (default), or those and the "
                         "10,000 of the validation set, as many as the published DBM's 60,000")
    ap.add_argument("--checkpoint-dir", help="checkpoint each model's training to DIR/NAME.npz (and the training "
                                             "time it holds to DIR/NAME.seconds); a model whose checkpoint exists "
                                             "resumes from it (evaluated only, once finished), and its train time "
                                             "counts every leg")
    args = ap.parse_args()
    out = Path(args.out) if args.out else ROOT / ("bench/results-quick.md" if args.quick else "docs/results.md")
    store = out.with_suffix(".json")
    if args.table_only:
        write_table(merged_rows([], store), False, out)
        print(f"wrote {out}")
        return
    data = np.load(DATA)
    train_x = data["train"].astype(np.float32)
    test_x = data["test"].astype(np.float32)
    extra = data["valid"].astype(np.float32) if args.train_on == "train+valid" else train_x[:0]
    if args.quick:
        # Every fifth test image, not the first 2,000: MNIST's test set puts its 5,000 cleaner
        # digits first, and on them the quick models scored 16 to 29 nats above every fifth image.
        train_x, extra, test_x = train_x[:10000], extra[:2000], test_x[::5]
    train_x = np.concatenate([train_x, extra])
    runs = 100
    betas = np.linspace(0, 1, 2001) if args.quick else standard_schedule()
    table = copy.deepcopy(QUICK if args.quick else FULL)
    if args.epochs is not None:
        for settings in table.values():
            (settings["joint"] if "joint" in settings else settings)["epochs"] = args.epochs
    for name in args.only.split(","):
        if name not in table:
            raise SystemExit(f"--only {args.only}: no model {name!r}; the models are {', '.join(table)}")
        apply_overrides(table[name], args.set, name in DIRECTED)  # before any training: a bad --set stops the run at once
    rows = []
    for name in args.only.split(","):
        settings = describe(table[name]) + (f", {len(train_x)} images" if args.quick else "") \
            + (f"; set {', '.join(args.set)}" if args.set else "") \
            + ("; trained on train+valid" if args.train_on != "train" else "")
        print(f"== {name}: {settings}", flush=True)
        checkpoint = None
        if args.checkpoint_dir:
            Path(args.checkpoint_dir).mkdir(parents=True, exist_ok=True)
            checkpoint = Path(args.checkpoint_dir) / f"{name}.npz"
        m, seconds = train(name, table[name], train_x, seed=0, checkpoint=checkpoint)
        result = evaluate(name, m, train_x, test_x, runs, betas)
        result.update(name=name, settings=settings, train_seconds=seconds)
        print(result, flush=True)
        rows.append(result)
        # after every model, so that an interrupted run keeps what it finished
        write_table(rows if args.quick else merged_rows(rows, store), args.quick, out)
        print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
