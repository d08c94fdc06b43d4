"""The `gdsl` command: compile, check, graph and dump .gdl models.

Exit status: 0 on success, 2 on an error in the model (or its file), 3 on an
internal compiler bug. A model error is printed as FILE:LINE:COL, the source line
and a caret; no input ends in a Python traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .driver import STAGES, compile_source, dump, read_source
from .errors import CompilerBug, GdslError, Source

EXIT_OK, EXIT_MODEL_ERROR, EXIT_BUG = 0, 2, 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gdsl", description="Compile probabilistic graphical models written in .gdl")
    from . import __version__

    p.add_argument("--version", action="version", version=f"gdsl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="compile FILE.gdl to a Python module of numba kernels")
    c.add_argument("file")
    c.add_argument("-o", "--output", help="output .py path (default: MODEL_model.py next to FILE, MODEL being the model name)")
    c.add_argument("-q", "--quiet", action="store_true", help="do not print the schedule")
    k = sub.add_parser("check", help="parse and check FILE.gdl, reporting every error")
    k.add_argument("file")
    g = sub.add_parser("graph", help="export the factor graph (.dot, .graphml, or a .png/.svg/.pdf picture)")
    g.add_argument("file")
    g.add_argument("-o", "--output", required=True,
                   help="output path: .dot or .gv (DOT), .graphml, or .png/.svg/.pdf (drawn by Graphviz)")
    sub.add_parser("models", help="list the shipped models, one line each (use them by name: gdsl compile rbm)")
    w = sub.add_parser("warmup", help="compile models' kernels into the cache now, so later processes compile nothing")
    w.add_argument("files", nargs="*", metavar="file", help="models (.gdl files or shipped names)")
    w.add_argument("--all", action="store_true", help="every shipped model")
    w.add_argument("--dtype", choices=("default", "float32", "float64", "both"), default="default",
                   help="the models' floating-point type(s) to compile for (default: each model's default)")
    w.add_argument("--only", default=None,
                   help="comma-separated kinds of work to compile (sample, mean-field, free-energy, fit, ais, "
                        "log-prob; default: all)")
    d = sub.add_parser("dump", help="print one stage of the pipeline")
    d.add_argument("--stage", choices=STAGES, required=True)
    d.add_argument("file")
    return p


def run(argv) -> int:
    args = _parser().parse_args(argv)
    if args.command == "models":
        print(models_text(), end="")
        return EXIT_OK
    if args.command == "warmup":
        return _warmup(args)
    source = read_source(args.file)
    until = "py" if args.command in ("compile",) or getattr(args, "stage", None) == "py" else "plan"
    compiled = compile_source(source, until=until)
    if args.command == "check":
        print(f"{args.file}: ok ({compiled.schedule()})")
    elif args.command == "compile":
        out = Path(args.output) if args.output else Path(args.file).with_name(f"{compiled.ir.name}_model.py")
        _write(out, compiled.python)
        if not args.quiet:
            print(compiled.schedule())
            print(f"wrote {out}")
    elif args.command == "graph":
        from .ir.graph import UnknownGraphFormat, write_graph
        from .picture import MissingGraphviz

        try:
            write_graph(compiled.ir.graph, args.output)
        except OSError as e:
            raise _output_error(args.output, e) from None
        except (UnknownGraphFormat, MissingGraphviz) as e:  # the file's ending, or pygraphviz to install
            raise _usage_error(args.output, str(e)) from None
        print(f"wrote {args.output}")
    elif args.command == "dump":
        sys.stdout.write(dump(compiled, args.stage))
    return EXIT_OK


def _warmup(args) -> int:
    from .driver import shipped_models
    from .warmup import WORK, warm_up

    files = list(args.files) + (shipped_models() if args.all else [])
    if not files:
        raise _usage_error("warmup", "name the models to warm up (files or shipped names), or --all")
    only = WORK if args.only is None else tuple(w.strip() for w in args.only.split(",") if w.strip())
    unknown = [w for w in only if w not in WORK]
    if unknown or not only:
        raise _usage_error("--only", f"unknown kind of work {', '.join(unknown) or '(none)'}; use {', '.join(WORK)}")
    dtypes = {"default": [None], "both": ["float32", "float64"]}.get(args.dtype, [args.dtype])
    for f in files:
        for dtype in dtypes:
            read_source(f)  # a missing file or an unknown name is reported like every other command's
            print(f"{f}{'' if dtype is None else ' (' + dtype + ')'}:")
            warm_up(f, dtype=dtype, only=only)
    return EXIT_OK


def models_text() -> str:
    """One line per shipped model: its name and the first sentence of the comment above it."""
    from .driver import shipped_model_path, shipped_models

    names = shipped_models()
    width = max(map(len, names), default=0)
    lines = []
    for name in names:
        text = shipped_model_path(name).read_text(encoding="utf-8")
        lines.append(f"{name:<{width}}  {_first_sentence(text)}")
    return "\n".join(lines) + "\n"


def _first_sentence(text: str, limit: int = 100) -> str:
    comment = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    joined = " ".join(comment)
    cut = joined.find(". ")
    sentence = joined if cut < 0 else joined[:cut + 1]
    sentence = sentence.split(": ")[0] if len(sentence) > limit else sentence
    return sentence if len(sentence) <= limit else sentence[:limit - 3].rstrip() + "..."


def _write(path: Path, text: str) -> None:
    """Write UTF-8 via a temp file and a rename: a reader never sees a partial module."""
    import os
    import tempfile

    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # an ordinary file, not mkstemp's 0600
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise _output_error(path, e) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _usage_error(path, message: str) -> GdslError:
    err = GdslError(message, kind="file")
    err.source = Source("", str(path))
    return err


def _output_error(path, e: OSError) -> GdslError:
    err = GdslError(f"cannot write this file: {e.strerror or e}", kind="file")
    err.source = Source("", str(path))
    return err


def main(argv=None) -> int:
    _tolerant_output()
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except GdslError as e:
        print(e.format(), file=sys.stderr)
        return EXIT_MODEL_ERROR
    except CompilerBug as e:
        return _bug(str(e))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `gdsl dump ... | head`
        sys.stderr.close()
        return EXIT_OK
    except Exception as e:  # a failure outside the pipeline (graph export, dump) is still ours
        return _bug(f"{type(e).__name__}: {e}")


def _tolerant_output() -> None:
    """Under an ASCII locale (LC_ALL=C), characters the terminal cannot encode are printed as
    escapes instead of ending the command in UnicodeEncodeError (a non-ASCII .gdl comment)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):  # a replaced stream (tests, pipes set up by a caller)
            pass


def _bug(what: str) -> int:
    print(f"gdsl: internal compiler error (a bug in gdsl, not in your model): {what}\n"
          "please report it with the .gdl file that triggered it", file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
