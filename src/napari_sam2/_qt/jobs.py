"""A queue that runs the widget's compute jobs one at a time in napari thread workers.

The VideoSession is not thread-safe, so loading, previews and propagation
never overlap: each job starts when the one before has finished. Callbacks
(``on_yield``, ``on_done``, ``on_error``, ``on_finish``) run on the UI thread,
which is the only thread that touches napari layers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qtpy.QtCore import QObject, Signal


class WorkerError(Exception):
    """A RuntimeError raised inside a generator worker, re-raised as something else.

    superqt's GeneratorWorker treats a RuntimeError as "the worker was deleted"
    and only warns, so torch errors would otherwise vanish.
    """


@dataclass(eq=False)
class Job:
    """One unit of compute: ``func(*args)`` (a function or a generator function)."""

    kind: str
    func: Callable
    args: tuple = ()
    on_yield: Callable[[Any], None] | None = None
    on_done: Callable[[Any], None] | None = None
    on_error: Callable[[BaseException], None] | None = None
    on_finish: Callable[[], None] | None = None
    on_start: Callable[[], None] | None = None
    meta: dict = field(default_factory=dict)
    # on_finish releases resources (touches no widget): run it even after the
    # widget was deleted.
    cleanup: bool = False
    # Filled in by the queue.
    worker: Any = None
    started: bool = False
    done: bool = False
    cancelled: bool = False
    error: BaseException | None = None
    result: Any = None


def _guarded(gen_func, *args):
    """Run a generator function, turning RuntimeError into WorkerError (see above).

    Its return value is the worker's (``on_done`` receives it).
    """
    try:
        return (yield from gen_func(*args))
    except RuntimeError as exc:
        raise WorkerError(f"{type(exc).__name__}: {exc}") from exc


class JobQueue(QObject):
    """FIFO of :class:`Job`; at most one runs, in a napari ``thread_worker``."""

    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pending: deque[Job] = deque()
        self.current: Job | None = None

    @property
    def busy(self) -> bool:
        return self.current is not None or bool(self._pending)

    def pending(self, kind: str | None = None) -> list[Job]:
        return [j for j in self._pending if kind is None or j.kind == kind]

    def submit(self, job: Job) -> Job:
        was_busy = self.busy
        self._pending.append(job)
        if not was_busy:
            self.busy_changed.emit(True)
        self._next()
        return job

    def cancel(self, kinds: tuple[str, ...] | None = None) -> None:
        """Stop the running job (if of ``kinds``) and drop queued ones of ``kinds``.

        A running generator job stops before its next item: the item being
        computed still arrives, nothing after it.
        """
        keep = deque()
        for job in self._pending:
            if kinds is None or job.kind in kinds:
                job.cancelled = job.done = True
                if job.on_finish:
                    job.on_finish()
            else:
                keep.append(job)
        self._pending = keep
        cur = self.current
        if cur is not None and (kinds is None or cur.kind in kinds) and cur.worker is not None:
            cur.cancelled = True
            cur.worker.quit()
        if not self.busy:
            self.busy_changed.emit(False)

    def wait(self, job: Job | None = None, timeout: float | None = None) -> bool:
        """Process Qt events until ``job`` (or every job) is done; False on timeout.

        Used by the scripting API (``wait=True``): the UI stays live, so the
        workers' results are written to the layers while we wait.
        """
        from qtpy.QtWidgets import QApplication

        end = None if timeout is None else time.monotonic() + timeout
        while (not job.done) if job is not None else self.busy:
            if end is not None and time.monotonic() > end:
                return False
            QApplication.processEvents()
            time.sleep(0.002)
        return True

    # -- internals -----------------------------------------------------------

    def _alive(self) -> bool:
        """False once Qt has deleted this object.

        Workers may outlive the widget (napari closed mid-propagation); their
        late signals are then ignored.
        """
        try:
            self.objectName()
        except RuntimeError:
            return False
        return True

    def _next(self) -> None:
        if self.current is not None or not self._pending:
            return
        job = self._pending.popleft()
        self.current = job
        job.started = True
        if job.on_start:
            job.on_start()
        self._start(job)

    def _start(self, job: Job) -> None:
        import inspect

        from napari.qt.threading import create_worker

        if inspect.isgeneratorfunction(job.func):
            worker = create_worker(_guarded, job.func, *job.args, _ignore_errors=True)
            worker.yielded.connect(lambda value, j=job: self._yielded(j, value))
        else:
            worker = create_worker(job.func, *job.args, _ignore_errors=True)
        worker.returned.connect(lambda value, j=job: self._returned(j, value))
        worker.errored.connect(lambda exc, j=job: self._errored(j, exc))
        worker.finished.connect(lambda j=job: self._finished(j))
        job.worker = worker
        worker.start()

    def _yielded(self, job: Job, value) -> None:
        if job.on_yield and self._alive():
            job.on_yield(value)

    def _returned(self, job: Job, value) -> None:
        job.result = value
        if job.on_done and self._alive():
            job.on_done(value)

    def _errored(self, job: Job, exc: BaseException) -> None:
        cause = exc.__cause__ if isinstance(exc, WorkerError) and exc.__cause__ else exc
        job.error = cause
        if job.on_error and self._alive():
            job.on_error(cause)

    def _finished(self, job: Job) -> None:
        job.done = True
        job.worker = None
        if self.current is job:
            self.current = None
        if not self._alive():
            # The widget is gone: run no more work, but still release sessions.
            for j in [job, *self._pending]:
                if j.cleanup and j.on_finish:
                    j.on_finish()
            self._pending.clear()
            return
        try:
            if job.on_finish:
                job.on_finish()
        finally:
            self._next()
            if not self.busy:
                self.busy_changed.emit(False)
