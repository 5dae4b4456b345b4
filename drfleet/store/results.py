"""What the model commands return: typed objects the command line renders as lines or as
their --json document (docs/schemas/download-model.json and its siblings). Pure."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Transfer:
    """download-model (S3 to a folder) and import-model (a folder to S3)."""

    prefix: str
    folder: str
    files: int
    bytes: int
    into_s3: bool = False
    failed: bool = False
    gone: list[str] = field(default_factory=list)  # listed, then deleted before they were read

    def as_json(self) -> dict[str, Any]:
        where = "src" if self.into_s3 else "out"
        doc = {"prefix": self.prefix, where: self.folder, "files": self.files, "bytes": self.bytes}
        if self.gone:
            doc["gone"] = self.gone
        return doc

    def lines(self) -> Iterator[str]:
        if self.into_s3:
            yield f"{self.files} files, {self.bytes} bytes from {self.folder} in {self.prefix}"
        else:
            yield f"{self.files} files, {self.bytes} bytes of {self.prefix} in {self.folder}"
        if self.gone:
            yield (
                f"{len(self.gone)} objects were deleted while they were copied (a training run "
                f"keeps only its latest checkpoints): {', '.join(self.gone)}"
            )


@dataclass
class ConsoleUpload:
    """upload-model: the checkpoint and the objects it put (or would put) in the console's
    layout, and what --wipe deleted there."""

    checkpoint: str
    target: str
    objects: list[str]
    dry_run: bool
    deleted: list[str] | None = None
    failed: bool = False

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "checkpoint": self.checkpoint,
            "target": self.target,
            "objects": self.objects,
            "dry_run": self.dry_run,
        }
        if self.deleted is not None:
            out["deleted"] = self.deleted
        return out

    def lines(self) -> Iterator[str]:
        verb = "would copy" if self.dry_run else "copied"
        yield f"checkpoint {self.checkpoint}: {verb} {len(self.objects)} objects to {self.target}"
        if self.dry_run:
            for key in self.objects:
                yield f"  {key}"


@dataclass
class CarFile:
    """car-model: the tar.gz written here, and where else it was put."""

    checkpoint: str
    out: str
    bytes: int
    uploaded: str | None = None
    failed: bool = False

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"checkpoint": self.checkpoint, "out": self.out, "bytes": self.bytes}
        if self.uploaded is not None:
            out["uploaded"] = self.uploaded
        return out

    def lines(self) -> Iterator[str]:
        yield f"checkpoint {self.checkpoint}: {self.out} ({self.bytes} bytes)"
        if self.uploaded is not None:
            yield f"uploaded to {self.uploaded}"


@dataclass
class Incremented:
    """increment-training: run.env's model prefix moved on, and what the new prefix held."""

    old: str
    new: str
    run_env: str
    changes: dict[str, str] = field(default_factory=dict)
    wiped: int | None = None  # None: not asked
    bucket: str = ""
    failed: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.old,
            "to": self.new,
            "run_env": self.run_env,
            "set": self.changes,
            "wiped": self.wiped or 0,
        }

    def lines(self) -> Iterator[str]:
        old, new = self.old, self.new
        yield f"model {old} -> {new}: {self.run_env} now trains {new} from {old}"
        if self.wiped is not None:
            yield f"deleted what s3://{self.bucket}/{self.new}/ held ({self.wiped}+ objects)"


@dataclass
class UploadPrefix:
    """increment-upload-model: DR_UPLOAD_S3_PREFIX moved on in run.env."""

    old: str
    new: str
    run_env: str
    failed: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"from": self.old, "to": self.new, "run_env": self.run_env}

    def lines(self) -> Iterator[str]:
        yield f"DR_UPLOAD_S3_PREFIX: {self.old} -> {self.new} in {self.run_env}"


@dataclass
class ModelCopied:
    """download-model --source: a model copied from an S3 URL into the run's S3 (DRfC's
    dr-download-model -s -t), and the config files put in custom_files/ (-c)."""

    source: str
    target: str
    objects: list[str]
    bytes: int
    dry_run: bool
    config: list[str] = field(default_factory=list)
    failed: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "objects": self.objects,
            "bytes": self.bytes,
            "dry_run": self.dry_run,
            "config": self.config,
        }

    def lines(self) -> Iterator[str]:
        verb = "would copy" if self.dry_run else "copied"
        yield f"{self.source}: {verb} {len(self.objects)} objects to {self.target}"
        for path in self.config:
            yield f"  {path}"


@dataclass
class DroaImported:
    """droa-import-model: the model DRoA made, what was uploaded, and what was changed in its
    training_params.yaml."""

    model_id: str
    name: str
    uploaded_to: str
    files: list[str]
    bytes: int
    checkpoint: str | None = None
    said: list[str] = field(default_factory=list)
    failed: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "name": self.name,
            "uploaded_to": self.uploaded_to,
            "checkpoint": self.checkpoint,
            "files": self.files,
            "bytes": self.bytes,
            "changed": self.said,
        }

    def lines(self) -> Iterator[str]:
        if self.checkpoint:
            yield f"checkpoint {self.checkpoint}"
        for line in self.said:
            yield f"training_params.yaml: {line}"
        yield f"{len(self.files)} files, {self.bytes} bytes uploaded to {self.uploaded_to}"
        yield f"DRoA is importing model {self.name} (id {self.model_id}); it is ready when"
        yield f"drfleet droa-get-model {self.model_id} says READY"
