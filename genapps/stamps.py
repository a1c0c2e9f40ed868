"""A whole run's "nothing to do" check, light (no torch): a rerun whose options, inputs, models and
outputs are all as the last complete run left them finishes at once, without importing torch or
loading a model (a 100-file rerun in a fraction of a second instead of torch's import).

After a run in which no file failed, the CLI writes OUTPUT/.genapps-done.json (`Stamp.write`):
- key: SHA-256 of what was run (the task or the pipeline's stages, their options, the device,
  genapps's version) and of the size and mtime of the bundled model files and of the converted
  zoo models (`genapps info`'s folders), which a model name may resolve to;
- reads: the signature of every file the run read (INPUT's tree, and each file or folder an
  option names: --reference, --masks, a model file, ...), taken BEFORE the run;
- outputs: the signature of OUTPUT's tree after the run and its report (the stamp and the lock
  files excepted).
A signature is the SHA-256 of the sorted (relative path, size, mtime_ns) of a tree's files. A
rerun (`Stamp.current`) compares all three: equal means nothing to do; any difference (an input
touched, an output deleted or edited, another option, model or genapps) means the normal run,
whose per-file resume check (genapps.batch.Manifest) decides file by file, exactly as before. The
stamp is a shortcut past that check, never a replacement for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

from genapps import paths

STAMP = ".genapps-done.json"
FORMAT = 1


def tree_signature(root: str | Path, skip: tuple[str, ...] = ()) -> str:
    """SHA-256 of the sorted (relative path, size, mtime_ns) of every file under `root` (or of `root`
    itself when it is a file; "missing" when it does not exist). Top-level names starting with one of
    `skip` are left out."""
    root = Path(root)
    if root.is_file():
        st = root.stat()
        return hashlib.sha256(f"{st.st_size} {st.st_mtime_ns}".encode()).hexdigest()
    if not root.is_dir():
        return "missing"
    rows = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = Path(folder).relative_to(root)
        for name in files:
            if rel == Path(".") and name.startswith(skip):
                continue
            try:
                st = os.stat(os.path.join(folder, name))
            except OSError:  # vanished meanwhile: the signature then differs anyway
                continue
            rows.append(f"{(rel / name).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()


def _model_folders() -> list[str]:
    """Signatures of where model names resolve: the bundled weights and the converted zoo models."""
    home = paths.models_home()
    return [tree_signature(Path(__file__).parent / "weights"), str(home), tree_signature(home)]


def option_paths(config) -> list[str]:
    """The files and folders a Config's path-valued options name (reference, masks, a model file, ...)."""
    found = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.metadata.get("path") and isinstance(value, str) and not paths.is_url(value) and Path(value).exists():
            found.append(str(Path(value).resolve()))
    return found


@dataclasses.dataclass(frozen=True)
class Stamp:
    """The "nothing to do" stamp of one output folder (see the module doc)."""

    folder: Path
    key: str
    reads: str
    report: bool = True  # this run wants OUTPUT/report.html: a stamp of a run without one does not do


    @classmethod
    def of(cls, folder: str | Path, what: dict, reads: list[str | Path], report: bool = True) -> Stamp:
        """The stamp a run of `what` (JSON-able: task, options, device, ...) reading `reads` would leave
        in `folder` (with its report, or `report` False without); call it before the run (the reads'
        signature is taken now)."""
        from genapps import __version__

        material = json.dumps({"what": what, "genapps": __version__, "models": _model_folders()},
                              sort_keys=True, default=str)
        reads = sorted({str(Path(r).resolve()) for r in reads})
        signature = hashlib.sha256("\n".join(f"{r}\0{tree_signature(r)}" for r in reads).encode()).hexdigest()
        return cls(Path(folder), hashlib.sha256(material.encode()).hexdigest(), signature, report)

    @property
    def path(self) -> Path:
        return self.folder / STAMP

    def _outputs(self) -> str:
        return tree_signature(self.folder, skip=(STAMP, paths.LOCK, f"{STAMP}.tmp"))

    def current(self) -> dict | None:
        """The stored stamp (with its "done" count) when nothing changed since it was written, else None."""
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        mine = {"format": FORMAT, "key": self.key, "reads": self.reads}
        if not isinstance(stored, dict) or any(stored.get(k) != v for k, v in mine.items()):
            return None
        if self.report and not stored.get("report"):  # the report there may be an older run's
            return None
        return stored if stored.get("outputs") == self._outputs() else None

    def write(self, done: int) -> None:
        """Record that the run finished with nothing failed (`done` files ok or already done); atomic."""
        body = json.dumps({"format": FORMAT, "key": self.key, "reads": self.reads, "outputs": self._outputs(),
                           "report": self.report, "done": done}, indent=1)
        fd, tmp = tempfile.mkstemp(prefix=f"{STAMP}.tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def for_task(task: str, cfg, input_dir: str | Path, output_dir: str | Path, device: str,
             report_dir: str | Path | None, applies: bool) -> Stamp | None:
    """The stamp of a `genapps TASK INPUT OUTPUT` run, or None where the shortcut does not apply
    (`applies` False: a remote or one-file output, a sharded run; resume off: --overwrite; a report
    written elsewhere than OUTPUT)."""
    from genapps.distributed import current

    if not applies or not getattr(cfg, "resume", False) or current().active:
        return None
    if report_dir is not None and Path(report_dir).resolve() != Path(output_dir).resolve():
        return None
    what = {"task": task, "options": dataclasses.asdict(cfg), "device": device}
    return Stamp.of(output_dir, what, [input_dir, *option_paths(cfg)], report=report_dir is not None)
