"""`parallel` steps: branches or a `for` whose iterations run concurrently, in threads.

At most `concurrency_limit` branches run at once (default 20): that many worker threads each
take the next waiting branch. Branches read the enclosing scope and may assign only the
variables listed in `shared` (each assignment to a shared variable is atomic). Policies: by
default the first unhandled error cancels the other branches and fails the parallel step with
that error; with `exception_policy: continueAll` every branch runs to its end and the step
then raises UnhandledBranchError listing each branch's error.
"""
from __future__ import annotations

import heapq
import threading
from typing import Any

from localcloud.workflows import limits
from localcloud.workflows.errors import ExecutionCancelled, WorkflowError, key_error, type_error
from localcloud.workflows.interpreter import BranchFrame, CallContext, Frame

UNHANDLED_BRANCH_MESSAGE = ("UnhandledBranchError: one or more branches or iterations "
                            "encountered an unhandled runtime error")
MAX_REPORTED_BRANCH_ERRORS = 100


def run_parallel(step: Any, frame: Frame, entry: Any) -> Any:
    if frame.parallel_depth >= limits.PARALLEL_NESTING:
        raise WorkflowError.tagged(
            "ParallelNestingError", f"step '{step.name}': parallel steps nest at most "
                                    f"{limits.PARALLEL_NESTING} deep")
    for name in step.shared:
        if not frame.has_var(name):
            raise key_error(f"step '{step.name}': shared variable '{name}' must be assigned "
                            f"before the parallel step")
    limit = limits.PARALLEL_CONCURRENCY_DEFAULT
    if step.concurrency_limit is not None:
        limit = step.concurrency_limit.evaluate(frame)
        if type(limit) is not int or limit < 1:
            raise type_error(f"step '{step.name}': concurrency_limit must be a positive "
                             f"integer, got {limit!r}")
    if step.loop is not None:
        work = [(index, None, item) for index, item in enumerate(step.loop.iterate(frame))]
    else:
        work = [(index, (name, block), None) for index, (name, block) in enumerate(step.branches)]
    if not work:
        return None
    return _Fanout(step, frame, entry, work, limit).run()


class _Fanout:
    def __init__(self, step: Any, frame: Frame, entry: Any, work: list, limit: int):
        self.step = step
        self.frame = frame
        self.entry = entry
        self.work = work
        self.next_index = 0
        self.lock = threading.Lock()
        self.token = frame.token.child()
        self.shared = frozenset(step.shared)
        self.errors: list[tuple[Any, WorkflowError]] = []
        self.ends: list[float] = []
        self.workers = min(limit, len(work))

    def run(self) -> None:
        frame = self.frame
        clock = frame.run.clock
        start = clock.position()
        self.slots = [start] * self.workers
        threads = [threading.Thread(target=self.worker, daemon=True,
                                    name=f"wf-{frame.run.execution_id[:8]}-{self.step.name}-{i}")
                   for i in range(self.workers)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            frame.token.discard(self.token)
        if self.ends:
            clock.advance_to(max(self.ends))
        frame.token.check()
        if self.errors:
            if self.step.continue_all:
                raise WorkflowError({
                    "message": UNHANDLED_BRANCH_MESSAGE,
                    "tags": ["UnhandledBranchError"],
                    "branches": [{"id": label, "error": error.value}
                                 for label, error in self.errors[:MAX_REPORTED_BRANCH_ERRORS]],
                })
            raise self.errors[0][1]
        return None

    def take(self):
        """The next waiting branch and the time its slot frees (on a virtual clock, a queued
        branch starts when the earliest running one ended, whichever thread runs it)."""
        with self.lock:
            if self.next_index >= len(self.work) or self.token.cancelled:
                return None, 0.0
            item = self.work[self.next_index]
            self.next_index += 1
            return item, heapq.heappop(self.slots)

    def worker(self) -> None:
        clock = self.frame.run.clock
        while True:
            item, slot_start = self.take()
            if item is None:
                break
            with clock.timeline(slot_start):
                try:
                    self.run_one(*item)
                finally:
                    end = clock.position()
                    with self.lock:
                        heapq.heappush(self.slots, end)
                        self.ends.append(end)

    def run_one(self, index: int, branch: Any, item: Any) -> None:
        step = self.step
        frame = self.frame
        run = frame.run
        history = run.history
        ctx = CallContext(run, self.token)
        branch_frame = BranchFrame(frame, ctx, self.shared)
        if branch is not None:
            label, block = branch
            life = history.record(frame.routine_name, label, "STEP_PARALLEL_BRANCH_ENTRY",
                                  self.entry, {"progressType": "PROGRESS_TYPE_PARALLEL_BRANCH",
                                               "progressNumber": index, "threadId": str(index)},
                                  where=f"step '{step.name}' branch {label}")
        else:
            label, block = index, step.loop.block
            life = history.record(frame.routine_name, step.name, "STEP_FOR_ITERATION",
                                  self.entry, {"progressType": "PROGRESS_TYPE_PARALLEL_FOR",
                                               "progressNumber": index, "threadId": str(index)},
                                  where=f"step '{step.name}' branch {label}")
        try:
            with life as entry:
                if branch is None:
                    branch_frame.set_local(step.loop.value_name, item)
                    if step.loop.index_name is not None:
                        branch_frame.set_local(step.loop.index_name, index)
                branch_frame.run_block(block, entry)
        except WorkflowError as error:   # an engine defect arrives here as a SystemError
            branch_frame.trace(error)
            self.failed(label, error)
        except ExecutionCancelled:
            pass
        finally:
            branch_frame.release()

    def failed(self, label: Any, error: WorkflowError) -> None:
        with self.lock:
            self.errors.append((label, error))
        if not self.step.continue_all:
            self.token.cancel("another branch of the parallel step failed")
