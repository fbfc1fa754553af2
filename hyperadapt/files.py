"""Writing output folders so that a crash or an error never leaves one half-written."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(target: str | Path, carry: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target`` whole.

    On an exception the temporary folder is removed and ``target`` is left as it was. The folder
    gets ordinary permissions (``mkdtemp`` alone would make it private to its owner).

    Args:
        target: The folder to create or replace.
        carry: Names of entries of the existing ``target`` that move into the new folder, just
            before it replaces ``target`` (a run's checkpoints, say, which must survive it);
            names the new folder already holds are not carried.

    Example:
        >>> with atomic_dir("out/adapter") as tmp:  # doctest: +SKIP
        ...     (tmp / "adapter_config.json").write_text("{}")
    """
    target = Path(target)
    if target.is_symlink():  # replace what the link points to, and keep the link
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        mask = _umask()
        for root, _dirs, files in os.walk(tmp):
            os.chmod(root, 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~mask)
        moved = []
        try:
            for name in carry:
                if (target / name).exists() and not (tmp / name).exists():
                    os.replace(target / name, tmp / name)
                    moved.append(name)
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            for name in moved:  # put them back before the temporary folder is removed
                if (tmp / name).exists() and target.is_dir():
                    os.replace(tmp / name, target / name)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RunLock:
    """An exclusive lock on an output folder, held while a run writes to it.

    The lock is a ``flock`` on a hidden file beside the folder; the kernel releases it when the
    process ends, however it ends, so a killed run never leaves a stale lock.

    Raises:
        OSError: from `acquire` when another process holds the lock (``BlockingIOError``).
    """

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.path = folder.parent / f".{folder.name}.lock"
        self.holder = ""
        self._file = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            self.holder = handle.read().strip()
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None
