"""Read back the offline W&B runs a command wrote, from W&B's own run files (``offline-run-*/run-<id>.wandb``).

wandb 0.31 ships no Python reader for them. A ``.wandb`` file is LevelDB's log format: a 7-byte header (``:W&B``,
the magic 0xBEE1 little-endian, version 0), then 32 KiB blocks of chunks, each a 4-byte little-endian checksum
(zlib's CRC-32 of the type byte and the data - not LevelDB's masked CRC-32C: checked against the files wandb 0.31
writes), a 2-byte little-endian length and a 1-byte type (FULL, FIRST, MIDDLE, LAST); a block's tail shorter than a
chunk header is zero padding. The records are ``wandb.proto.wandb_internal_pb2.Record`` protobufs.

``read_run(folder)`` gives what a dashboard would show of one run: its identity (id, group, job type, name, tags),
the config, the history rows, the summary (as W&B computes it at the end, ``define_metric`` aggregates included),
the tables and images it logged and its artifacts. ``offline_runs(root)`` reads every offline run under a folder.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
CHUNK_HEADER = 7  # crc (4) + length (2) + type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class CorruptRunFile(ValueError):
    """The file is not a W&B run file, or a chunk's checksum or framing is wrong."""


def records_bytes(path: Path) -> Iterator[bytes]:
    """The serialized records of one ``.wandb`` file, in order (chunks joined, checksums verified)."""
    data = path.read_bytes()
    if data[: len(HEADER)] != HEADER:
        raise CorruptRunFile(f"{path}: header {data[:7]!r} is not {HEADER!r}")
    offset, pending = len(HEADER), bytearray()
    while offset + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - offset % BLOCK
        if left_in_block < CHUNK_HEADER:  # trailer: zero padding to the next block
            offset += left_in_block
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, offset)
        if kind == 0 and length == 0:  # zeros at the end of a file wandb preallocated or is still writing
            break
        start = offset + CHUNK_HEADER
        payload = data[start : start + length]
        if len(payload) != length:  # the last chunk is still being written
            break
        if zlib.crc32(bytes([kind]) + payload) != crc:
            raise CorruptRunFile(f"{path}: bad checksum of the chunk at byte {offset}")
        offset = start + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = bytearray(payload)
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            yield bytes(pending + payload)
            pending = bytearray()
        else:
            raise CorruptRunFile(f"{path}: chunk type {kind} at byte {offset}")


def _path(item: Any) -> list[str]:
    return list(item.nested_key) if item.nested_key else [item.key]


def _set(target: dict[str, Any], item: Any, value: Any) -> None:
    """``target[a][b] = value`` for an item with the nested key ``[a, b]`` (W&B splits a dict value so)."""
    *parents, last = _path(item)
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


def _drop(target: dict[str, Any], item: Any) -> None:
    *parents, last = _path(item)
    for part in parents:
        target = target.get(part, {})
    target.pop(last, None)


def _value(item: Any) -> Any:
    """The value of a config, summary or history item (typed history fields, else ``value_json``)."""
    if item.DESCRIPTOR.name == "HistoryItem" and not item.value_json:
        for name in ("boolean", "integer", "number", "text"):
            if item.HasField(name):
                return getattr(item, name)
        return json.loads(item.json) if item.HasField("json") else None
    return json.loads(item.value_json) if item.value_json else None


@dataclass
class OfflineRun:
    """One offline run as its files hold it."""

    folder: Path
    id: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    name: str = ""
    tags: tuple[str, ...] = ()
    resumed: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # name, type, files (paths in the artifact)
    exit_code: int | None = None

    def config_value(self, dotted: str) -> Any:
        """``config_value("model.attention")``: a nested value of the config (W&B keeps each top key's value)."""
        value: Any = self.config
        for part in dotted.split("."):
            value = value[part]
        return value

    def table(self, key: str) -> tuple[list[str], list[list[Any]]]:
        """The columns and rows of the ``wandb.Table`` the run logged under ``key`` (its latest version)."""
        ref = self.summary.get(key)
        if not isinstance(ref, dict) or "table" not in str(ref.get("_type", "")):
            raise KeyError(f"{self.folder}: no table logged under {key!r} (summary: {ref!r})")
        content = json.loads((self.folder / "files" / ref["path"]).read_text(encoding="utf-8"))
        return list(content["columns"]), [list(row) for row in content["data"]]

    def image_keys(self) -> list[str]:
        """Summary keys that hold images (``wandb.Image`` or a list of them)."""
        return sorted(k for k, v in self.summary.items() if isinstance(v, dict) and "image" in str(v.get("_type")))


def read_run(folder: Path, wait_s: float = 15.0) -> OfflineRun:
    """The run of one ``offline-run-*`` folder (its one ``run-<id>.wandb`` file).

    W&B's service process writes the file; in a process that called ``finish()`` and goes on, the last records may
    still be on their way: wait up to ``wait_s`` for the run's exit record, W&B's last."""
    deadline = time.monotonic() + wait_s
    while True:
        run = _read_run(Path(folder))
        if run.exit_code is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


def _read_run(folder: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(folder.glob("run-*.wandb"))
    if len(files) != 1:
        raise FileNotFoundError(f"{folder}: {len(files)} run files")
    run = OfflineRun(folder=folder)
    for raw in records_bytes(files[0]):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.id, run.project, run.group, run.job_type = r.run_id, r.project, r.run_group, r.job_type
            run.name, run.tags, run.resumed = r.display_name, tuple(r.tags), bool(r.resumed)
            for item in r.config.update:
                _set(run.config, item, _value(item))
        elif kind == "config":
            for item in record.config.update:
                _set(run.config, item, _value(item))
            for item in record.config.remove:
                _drop(run.config, item)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _set(row, item, _value(item))
            run.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _set(run.summary, item, _value(item))
            for item in record.summary.remove:
                _drop(run.summary, item)
        elif kind == "artifact":
            a = record.artifact
            paths = [entry.path for entry in a.manifest.contents]
            run.artifacts.append({"name": a.name, "type": a.type, "files": sorted(paths)})
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    # wandb's config values are {"value": ..., "desc": ...}; keep the value
    run.config = {k: v.get("value") if isinstance(v, dict) and "value" in v else v for k, v in run.config.items()}
    return run


def offline_runs(root: Path) -> list[OfflineRun]:
    """Every offline run under ``root`` (any depth), by folder name."""
    return [read_run(folder) for folder in sorted(Path(root).rglob("offline-run-*")) if folder.is_dir()]
