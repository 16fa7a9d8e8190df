"""``darnet-predict``: the command line of ``darnet_pl.inference.predict`` (options, exit codes, Ctrl-C and resume)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from darnet_pl.cli.ensemble_options import add_ensemble_options, chosen_model_sets
from darnet_pl.explain.cam import CAM_METHODS
from darnet_pl.inference.outputs import Saver, earlier_results
from darnet_pl.inference.predict import (
    DEFAULT_OUT_ROOT,
    ModelEnsemble,
    Progress,
    ScanInput,
    UsageError,
    check_out_dir,
    expand_inputs,
    load_ensemble,
    out_dir,
    pick_device,
    predict,
)
from darnet_pl.utils.console import OneLineParser, Terminated
from darnet_pl.utils.errors import console_tool
from darnet_pl.utils.exit_codes import EXIT_OK, EXIT_SCAN_ERRORS, EXIT_SIGINT, EXIT_SIGTERM
from darnet_pl.utils.io import (
    StorageError,
    check_writable,
    output_folder,
)


def resume_command(argv: Sequence[str], out: Path, given_out: bool) -> str:
    """The command that continues an interrupted run: the same one, with ``--resume`` (and the folder used)."""
    args = [a for a in argv if a != "--overwrite"]
    if not given_out:
        args += ["--out", str(out)]
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(["darnet-predict", *args])


# ---------------------------------------------------------------------------------------------- command line


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="darnet-predict",
        description="Classify chest CT scans (NIfTI, DICOM series, slice folders, CSV lists) with trained DARNet "
        "checkpoints; several checkpoints are averaged.",
    )
    add_ensemble_options(
        parser,
        ckpt_help="a checkpoint file, or a run/sweep folder (each finished job contributes its best checkpoint; one "
        "experiment per folder); repeat the option for an ensemble",
        out_help=f"output folder (default ./{DEFAULT_OUT_ROOT}/<timestamp>)",
        default=None,
    )
    parser.add_argument("--cam", action="store_true", help="write CAM montages, NIfTI maps and DA curves")
    parser.add_argument("--cam-method", choices=CAM_METHODS, default="cam", help="cam (paper) or gradcam")
    parser.add_argument("--cam-class", default=None, help="explain this class (default: the predicted one)")
    parser.add_argument("--cam-slices", type=int, default=12, help="axial slices in a montage (default 12)")
    parser.add_argument(
        "--resume", action="store_true",
        help="continue an interrupted run in --out: keep its predictions, predict only the scans it has not",
    )  # fmt: skip
    parser.add_argument("inputs", nargs="+", metavar="SCAN", help="NIfTI file, DICOM/slice folder, or CSV list")
    return parser


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    if args.cam_slices < 1:
        raise UsageError(f"--cam-slices must be positive, got {args.cam_slices}")
    if args.resume and args.overwrite:
        raise UsageError("--resume keeps what an earlier run predicted, --overwrite starts again: give one of them")
    device = pick_device(args.device)
    scans = expand_inputs(args.inputs)
    out = out_dir(args.out)
    check_out_dir(out, args.overwrite, args.resume)  # before the slow part; again below, once the folder is ours
    sets = chosen_model_sets(args)  # which jobs, of which experiment(s): one line and nothing loaded if refused
    ensemble = load_ensemble(sets[0], device, tta=args.tta)
    cam_method = args.cam_method if args.cam else None
    command = resume_command(argv, out, args.out is not None)
    lines, failed_any = [], False
    with output_folder(out, "darnet-predict"):
        check_out_dir(out, args.overwrite, args.resume)
        check_writable(out)  # a read-only folder is refused now, not after every scan was predicted
        for index, chosen in enumerate(sets):
            if index:
                ensemble = load_ensemble(chosen, device, tta=args.tta)
            target = out / chosen.folder_name if args.per_experiment else out
            later = len(scans) * (len(sets) - index - 1)  # predictions of the experiments after this one
            try:
                summary, failed = _predict_one(args, ensemble, scans, target, device, cam_method, command, later)
            except _Stopped as stopped:
                return stopped.code  # what was kept and how to continue is printed
            failed_any = failed_any or failed
            lines += [summary, f"models: {chosen.summary()}"]
    print("\n".join(lines))
    return EXIT_SCAN_ERRORS if failed_any else EXIT_OK


def _predict_one(
    args: argparse.Namespace,
    ensemble: ModelEnsemble,
    scans: Sequence[ScanInput],
    out: Path,
    device: torch.device,
    cam_method: str | None,
    command: str,
    later: int,
) -> tuple[str, bool]:
    """One ensemble's predictions into ``out``: its summary line and whether some scans failed. Stopped by Ctrl-C or
    SIGTERM: ``_Stopped`` after one line saying what was kept and the command that goes on (``later`` scans of the
    ensembles after this one are still to do)."""
    cam_class = None
    if args.cam_class is not None:
        if args.cam_class not in ensemble.class_names:
            raise UsageError(f"--cam-class {args.cam_class!r} is not one of {list(ensemble.class_names)}")
        cam_class = ensemble.class_names.index(args.cam_class)
    out.mkdir(exist_ok=True)
    earlier = earlier_results(out, ensemble, scans, cam_method, args.cam_class) if args.resume else {}
    done = Progress(scans, dict(earlier))
    save = Saver(out, ensemble, cam_method, args.cam_class)
    try:
        results = predict(
            ensemble, scans, out, device=device, batch_size=args.batch_size, cam_method=cam_method,
            cam_class=cam_class, cam_slices=args.cam_slices, done=done, after_batch=save,
        )  # fmt: skip
    except (KeyboardInterrupt, Terminated) as stop:
        save(done.results(), final=True)
        raise _Stopped(interrupted(stop, done, out, command, later)) from None
    except StorageError as error:
        raise with_resume_hint(error, out, command) from None
    save(results, final=True)
    failed = sum(r.error is not None for r in results)
    kept = f" ({len(earlier)} kept from the earlier run)" if earlier else ""
    line = f"{len(results) - failed} of {len(results)} scan(s) predicted{kept}, {failed} failed; results in {out}"
    return line, failed > 0


class _Stopped(Exception):
    """A run stopped by Ctrl-C or SIGTERM after saying so; ``code`` is its exit status."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def with_resume_hint(error: StorageError, out: Path, command: str) -> StorageError:
    """A write that failed after earlier batches were saved: say that they are kept and how to continue."""
    if not (out / "predictions.json").is_file():
        return error
    return StorageError(error.errno, f"{error}; the scans saved before are kept, to continue: {command}")


def interrupted(stop: BaseException, done: Progress, out: Path, command: str, later: int = 0) -> int:
    """One line: what was kept and the command that predicts the rest (``later``: predictions of other experiments
    still to do); exit 130 (Ctrl-C) or 143 (SIGTERM)."""
    signal_name, code = ("SIGTERM", EXIT_SIGTERM) if isinstance(stop, Terminated) else ("Ctrl-C", EXIT_SIGINT)
    kept, left = len(done.finished), len(done.todo()) + later
    print(
        f"stopped by {signal_name}: {kept} scan(s) done and kept in {out / 'predictions.csv'}; to predict the other "
        f"{left}, run: {command}",
        file=sys.stderr,
    )
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 ok, 3 some scans failed, 2 usage/user errors, 130/143 stopped
    by Ctrl-C/SIGTERM with the finished scans kept)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # the stopped line is for a stop before any scan was predicted, or a second Ctrl-C; run() reports the others
    return console_tool(lambda: run(args, argv), stopped="stopped: nothing more was written")


if __name__ == "__main__":
    raise SystemExit(main())
