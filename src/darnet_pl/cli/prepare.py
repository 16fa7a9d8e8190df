"""`darnet-prepare data=ccii data.root=<root> [+dry_run=true]`: convert a dataset once, up front.

It prints the split the data will get (scans and patients per chunk and class) before converting anything, so
a wrong root, index or split manifest shows in seconds rather than after an hour of conversion; ``+dry_run=true``
stops there and works from the index files alone (CC-CCII's ``unzip_filenames.csv``, or the split manifest
with ``split=paper``), without any image. Then it converts the scans into the volume cache (in parallel,
resumable) and prints the ingest summary and where the report is. With a cleaning list in use it says how many
scans the list does not cover (kept as downloaded); volumes found in two split chunks (the same content hash under
two keys, e.g. one scan supplied under two patient ids) are named with both ids after the conversion, the only
step that sees the volumes (a dry run does not; a re-run with everything cached takes seconds). Training runs the
same preparation itself; doing it here first keeps the conversion out of a GPU job. It shares the training configs
(``conf/``), so the data settings given here are the ones training will use.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from darnet_pl.data.records import ScanRecord
from darnet_pl.utils.package_files import CONF_DIR

CONFIG_DIR = str(CONF_DIR)


def split_chunks(
    data: DictConfig, records: Sequence[ScanRecord], excluded: Collection[str] = ()
) -> tuple[dict[str, list[ScanRecord]], list[str]]:
    """Records per split chunk (``fold1``..``foldK``, ``test``, then ``all``) and notes on what the split misses.

    ``excluded``: keys left out on purpose (cleaning, is_seg), not worth a note when the manifest lists them.
    """
    from darnet_pl.data.splits import TEST_CHUNK, assign_chunks, fold_chunk

    notes: list[str] = []
    chunks: dict[str, str] = {}
    if data.split == "paper" and not data.get("split_manifest"):
        notes.append("split=paper without data.split_manifest: all scans shown in one row (training needs one)")
    else:
        try:
            assignment = assign_chunks(
                records, data.split, data.get("split_manifest"), int(data.n_folds), int(data.split_seed)
            )
        except ValueError as error:  # SplitError, or scikit-learn's refusal of too small a class
            if data.split == "paper":
                raise
            notes.append(f"no stratified split: {error}")
        else:
            chunks = assignment.chunks
            absent = [key for key in assignment.absent if key not in excluded]
            unplaced = assignment.unplaced
            if unplaced:
                notes.append(
                    f"{len(unplaced)} scan(s) are not in the split manifest (e.g. {unplaced[0]}): training with this "
                    "split refuses them"
                )
            if absent:
                notes.append(
                    f"{len(absent)} scan(s) of the split manifest are not in the data (e.g. {absent[0]}): training "
                    "drops them from the split with a warning"
                )
    names = [fold_chunk(k) for k in range(int(data.n_folds))] + [TEST_CHUNK]
    names += sorted(set(chunks.values()) - set(names))
    subsets: dict[str, list[ScanRecord]] = {name: [] for name in names if name in set(chunks.values())}
    for record in records:
        chunk = chunks.get(record.key)
        if chunk is not None:
            subsets[chunk].append(record)
    subsets["all"] = list(records)
    return subsets, notes


def duplicate_line(source: Any, subsets: dict[str, list[ScanRecord]]) -> str | None:
    """``duplicate volumes across subsets: <key> (<chunk>) = <key> (<chunk>); ...``, or None when there is none.

    Uses the content hashes the cache holds; ``all`` is not a chunk and not compared.
    """
    from darnet_pl.data.splits import describe_duplicates, duplicates_across_subsets

    hashes = getattr(source, "volume_hashes", None)
    chunks = {name: records for name, records in subsets.items() if name != "all"}
    if not callable(hashes) or not chunks:
        return None
    pairs = duplicates_across_subsets(chunks, hashes())
    return describe_duplicates(pairs) if pairs else None


def _count_reasons(excluded: dict[str, str]) -> str:
    counts = Counter(excluded.values())
    return "; ".join(f"{n} {reason}" for reason, n in counts.most_common())


def with_pooled_training_set(subsets: dict[str, list[ScanRecord]]) -> dict[str, list[ScanRecord]]:
    """The chunks plus a ``train`` row, all fold chunks together: the training set of the paper's Table I."""
    folds = [name for name in subsets if name.startswith("fold")]
    if not folds:
        return subsets
    rows = {name: subsets[name] for name in folds}
    rows["train"] = [record for name in folds for record in subsets[name]]
    rows.update({name: records for name, records in subsets.items() if name not in rows})
    return rows


def build_source(data: DictConfig) -> Any:
    """The configured scan source, once every required ``data.`` key is given (else one line naming the key)."""
    from hydra.utils import instantiate

    missing = [key for key in data if OmegaConf.is_missing(data, key)]
    if missing:
        raise ValueError(f"data.{missing[0]} is required: add data.{missing[0]}=<value> to the command line")
    return instantiate(data.source, _convert_="all")


def prepare(cfg: DictConfig) -> int:
    """Print the split summary, then (unless ``dry_run``) convert the scans; returns the exit code."""

    from darnet_pl.data.sources.cached import unlisted_line
    from darnet_pl.data.splits import read_split_manifest, split_summary

    data = cfg.data
    source = build_source(data)
    if not hasattr(source, "plan"):
        print(f"data source {source.describe().get('source')}: nothing to prepare")
        return 0
    dry_run = bool(cfg.get("dry_run", False))
    if dry_run and data.split == "paper" and data.get("split_manifest"):
        plan = source.plan(dry_run=True, listed=read_split_manifest(data.split_manifest)[0])
        origin = f"from the split manifest {data.split_manifest}, no images read"
    else:
        plan = source.plan(dry_run=dry_run)
        origin = "from the index, no images read" if dry_run else "found on disk"
    records = plan.records

    description = source.describe()
    print(f"data: {source.name} ({description.get('root') or description.get('scan_list')})")
    print(f"cache: {source.cache.directory}")
    print(f"scans: {len(records)} ({origin})")
    if plan.problems:
        print(f"problems: {len(plan.problems)} scan(s) cannot be used as found, e.g. {plan.problems[0].cause}")
    if plan.excluded:
        print(f"left out on purpose: {len(plan.excluded)} ({_count_reasons(plan.excluded)})")
    if plan.positions:
        print(f"cleaning: {len(plan.positions)} scan(s) re-ordered or trimmed by the cleaning list")
    if plan.unlisted:
        print(unlisted_line(plan.unlisted))
    manifest = f" ({data.split_manifest})" if data.get("split_manifest") else ""
    subsets, notes = split_chunks(data, records, plan.excluded)
    print(f"split: {data.split}{manifest}")
    print(split_summary(with_pooled_training_set(subsets), list(data.class_names)))
    for note in notes:
        print(f"note: {note}")
    if dry_run:
        print("dry run: nothing converted")
        return 0

    with kept_on_stop(source.cache, records):
        report = source.ingest(plan)
    print(report.summary() + f" in {report.elapsed_s:.1f} s")
    if report.failed:
        print(f"left out: {len(report.failed)} scan(s), e.g. {report.failed[0].path}: {report.failed[0].cause}")
    print(f"usable: {len(source.records())} scan(s), listed in {source.records_path}")
    print(f"report: {source.report_path}")
    duplicates = duplicate_line(source, subsets)
    if duplicates:
        print(duplicates)
    return 0


class Stopped(SystemExit):
    """Ctrl-C or SIGTERM, said in one line (``message``); the exit status is 130 or 143."""

    def __init__(self, stop: BaseException, message: str) -> None:
        from darnet_pl.utils.console import Terminated
        from darnet_pl.utils.exit_codes import EXIT_SIGINT, EXIT_SIGTERM

        terminated = isinstance(stop, Terminated)
        super().__init__(EXIT_SIGTERM if terminated else EXIT_SIGINT)
        self.message = f"stopped by {'SIGTERM' if terminated else 'Ctrl-C'}: {message}"


@contextlib.contextmanager
def kept_on_stop(cache: Any, records: Sequence[ScanRecord]) -> Iterator[None]:
    """A stop during the conversion says how many volumes are kept (the workers are stopped by then, see
    ``utils.worker_pool``; each volume is complete or absent) and that the same command converts the rest."""
    from darnet_pl.utils.console import Terminated

    try:
        yield
    except (KeyboardInterrupt, Terminated) as stop:
        done = sum(1 for record in {r.key: r for r in records}.values() if cache.has(record))
        total = len({r.key for r in records})
        raise Stopped(
            stop,
            f"{done} of {total} scan(s) are converted and kept in {cache.directory}; "
            "run the same command again to convert the rest",
        ) from None


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="prepare")
def _run(cfg: DictConfig) -> None:
    from darnet_pl.config.checks import check_config
    from darnet_pl.utils.console import Terminated, sigterm_raises
    from darnet_pl.utils.errors import user_errors

    try:
        with sigterm_raises(), user_errors():
            check_config(cfg)  # the data keys and the root, before anything is read or written
            code = prepare(cfg)
    except (KeyboardInterrupt, Terminated) as stop:  # before the conversion: nothing was written
        stopped: Stopped = Stopped(stop, "nothing was converted")
    except Stopped as during_conversion:
        stopped = during_conversion
    else:
        if code:
            raise SystemExit(code)
        return
    print(stopped.message, file=sys.stderr)
    raise SystemExit(stopped.code) from None


def main() -> None:
    from darnet_pl.config.resolvers import register_resolvers

    register_resolvers()
    _run()


if __name__ == "__main__":
    sys.exit(main())
