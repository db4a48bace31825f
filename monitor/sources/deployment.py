"""The service's ``sources:`` entries (SPEC §10): the images of deployment files as watches.

A :class:`FileSource` globs its entry's ``files`` (``**`` spans folders; a folder
matched is searched as ``check -f`` searches it), reads every file with the same
extractors as ``check -f``, and yields one watch per image (used in several places:
once, with every place), the entry's keys applied as defaults. It keeps its last good
read: a file that no longer parses is an error for the caller to log, and the source
goes on yielding what it read before, so nothing stored is lost over a typo.

Reading is I/O (glob, stat, read): callers run :meth:`FileSource.read` and
:meth:`FileSource.fingerprint` in a worker thread.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from monitor.errors import InputError

if TYPE_CHECKING:
    from monitor.config import Config, SourceConfig, Watch
    from monitor.reference import ImageReference
    from monitor.sources.found import FoundImage
    from monitor.store.repository import WatchRow as StoredWatch

__all__ = [
    "FileSource",
    "Fingerprint",
    "file_sources",
    "matched_files",
    "read_sources",
    "stored_watch",
]

# What says a file changed without reading it: path → (inode, size, mtime in ns).
Fingerprint = Mapping[str, tuple[int, int, int]]


def matched_files(patterns: Sequence[str]) -> list[str]:
    """The files ``patterns`` match now, each once, in pattern then name order; a folder
    matched stands for the deployment files in it (as ``check -f`` finds them)."""
    from monitor.sources.files import walk_folder

    files: dict[str, None] = {}
    for pattern in patterns:
        for path in sorted(glob.glob(pattern, recursive=True)):
            if os.path.isdir(path):
                files.update(dict.fromkeys(walk_folder(path)))
            elif os.path.isfile(path):
                files.setdefault(os.path.normpath(path), None)
    return list(files)


def _fingerprint(files: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    stats: dict[str, tuple[int, int, int]] = {}
    # A compose file's .env changes what its images interpolate to.
    dotenvs = {os.path.join(os.path.dirname(path), ".env") for path in files}
    for path in [*files, *sorted(dotenvs)]:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        stats[path] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return stats


class FileSource:
    """The watches of one ``sources:`` entry; empty until the first good :meth:`read`."""

    def __init__(self, config: Config, entry: SourceConfig) -> None:
        self._config = config
        self._entry = entry
        source = config.source
        self._folder = os.path.dirname(os.path.abspath(source)) if source else os.getcwd()
        self._images: dict[str, tuple[ImageReference, tuple[str, ...]]] = {}
        self._targets: tuple[Watch, ...] = ()
        # Of the files as the last read, good or not, saw them: a broken file is
        # reported once per change, not on every look.
        self._seen: Fingerprint | None = None
        self._loaded = False
        self._files: tuple[str, ...] = ()
        # Per file: its stat (and its folder's .env's) when read, and what it held.
        self._parsed: dict[str, tuple[object, list[FoundImage]]] = {}

    @property
    def name(self) -> str:
        return self._entry.name

    @property
    def entry(self) -> SourceConfig:
        return self._entry

    @property
    def files(self) -> tuple[str, ...]:
        """The files the last read matched (none: a glob that matches nothing yet)."""
        return self._files

    def targets(self) -> Sequence[Watch]:
        return self._targets

    def adopt(self, previous: FileSource) -> None:
        """Start from ``previous``'s last good read (a config reload that kept the entry):
        if the files are broken now, its images stay watched, with this entry's keys."""
        self._images = dict(previous._images)
        self._seen = previous._seen
        self._loaded = previous._loaded
        self._files = previous._files
        self._parsed = previous._parsed
        self._targets = self._resolve()

    def carry_over(self, previous: object) -> None:
        """The dynamic-source seam's name for :meth:`adopt` (``previous`` of any kind)."""
        if isinstance(previous, FileSource):
            self.adopt(previous)

    def seed(self, stored: Sequence[str]) -> None:
        """Nothing to take from the store: the files are read at start."""

    def fingerprint(self) -> Fingerprint:
        """The files the entry matches now, with what says each changed (I/O: a thread)."""
        return _fingerprint(matched_files(self._entry.files))

    def stale(self, fingerprint: Fingerprint) -> bool:
        """Whether ``fingerprint`` differs from what the last read saw."""
        return self._seen is None or dict(fingerprint) != dict(self._seen)

    @property
    def loaded(self) -> bool:
        """Whether a read has worked (this one's, or the one it adopted)."""
        return self._loaded

    def unsee(self) -> None:
        """Forget what the files looked like: the next look reads them again (a change
        read but not applied)."""
        self._seen = None

    def reread(self) -> FileSource | None:
        """A new source with what the files say now (I/O: a thread), or None when the
        watches would be the same; this one is left as it is, so a change the service
        refuses can be retried. ``InputError`` as :meth:`read`."""
        fresh = FileSource(self._config, self._entry)
        fresh.adopt(self)
        try:
            changed = fresh.read()
        finally:
            self._seen = fresh._seen  # looked at: a broken file is told once per change
            self._parsed = fresh._parsed  # what each file holds, kept whatever is applied
        return fresh if changed else None

    def read(self, environ: Mapping[str, str] | None = None) -> bool:
        """Glob and read the files now (I/O: a thread); True when the targets changed.

        ``InputError`` (one line naming the file and line) when a file cannot be read
        or parsed or names an image that is no reference: the last good read stays.
        """
        from monitor.sources.files import images_in_paths
        from monitor.sources.found import gather

        files = matched_files(self._entry.files)
        # Taken before reading: a file written meanwhile is seen as changed next time.
        seen = self._seen = _fingerprint(files)
        variables = os.environ if environ is None else environ
        # Only the files that changed are parsed again: one edit in a folder of 500
        # manifests costs one parse, not 500 (about 2.5 ms each).
        parsed: dict[str, tuple[object, list[FoundImage]]] = {}
        try:
            for path in files:
                stamp = (seen.get(path), seen.get(os.path.join(os.path.dirname(path), ".env")))
                cached = self._parsed.get(path)
                if cached is not None and cached[0] == stamp and stamp[0] is not None:
                    parsed[path] = cached
                else:
                    parsed[path] = (stamp, images_in_paths([path], variables))
            found = gather([], [image for _, images in parsed.values() for image in images])
        except InputError as exc:
            raise InputError(f"source {self.name}: {exc}") from None
        self._parsed = parsed
        images = {
            str(item.reference): (
                item.reference,
                tuple(self._place(place.file, place.line) for place in item.places),
            )
            for item in found
        }
        self._files = tuple(files)
        if self._loaded and images == self._images:
            return False
        self._images = images
        self._loaded = True
        self._targets = self._resolve()
        return True

    def _place(self, file: str, line: int) -> str:
        path = os.path.abspath(file)
        inside = path.startswith(self._folder.rstrip(os.sep) + os.sep)
        return f"{os.path.relpath(path, self._folder) if inside else path}:{line}"

    def _resolve(self) -> tuple[Watch, ...]:
        from monitor.config.resolve import resolve_source_watch

        return tuple(
            resolve_source_watch(self._config, self._entry, image, places)
            for image, places in self._images.values()
        )


def file_sources(config: Config, previous: Sequence[object] = ()) -> list[FileSource]:
    """One unread :class:`FileSource` per ``sources:`` entry; an entry of the same name in
    ``previous`` (the sources in force before a reload) hands over its last good read."""
    before = {s.name: s for s in previous if isinstance(s, FileSource)}
    sources = []
    for entry in config.sources:
        source = FileSource(config, entry)
        old = before.get(entry.name)
        if old is not None:
            source.adopt(old)
        sources.append(source)
    return sources


def read_sources(sources: Sequence[object]) -> list[str]:
    """Read every :class:`FileSource` in ``sources`` (I/O: a thread).

    A source with a last good read that fails now keeps it: its one-line error is
    returned for the log. One that has never read its files raises ``InputError``:
    there is nothing to keep (the service refuses to start, a reload is refused).
    """
    problems = []
    for source in sources:
        if not isinstance(source, FileSource):
            continue
        try:
            source.read()
        except InputError as exc:
            if not source.loaded:
                raise
            problems.append(str(exc))
    return problems


def stored_watch(row: StoredWatch) -> Watch:
    """A watch as the store has it (image, schedule, source; no places): what ``regmon
    status`` shows for a source whose files do not read now."""
    from monitor.config import Watch
    from monitor.reference import parse_reference

    return Watch(
        image=parse_reference(row.image),
        key=row.image,
        interval=row.interval_seconds,
        cron=row.cron,
        jitter=0.0,
        platforms=(),
        webhooks=(),
        missing_after=1,
        failing_after=1,
        source=row.source,
    )
