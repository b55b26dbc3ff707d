"""Runs a plan of jobs (`runs make-reference`), several at a time when asked.

Small models use two CPU cores badly: two one-thread processes train the reference students 1.2-1.25x faster than
one two-thread process (measured on 2 cores for the 2-layer MiniLM and the SmolLM2 student). A step waits for
the steps whose run folders its config names (a teacher checkpoint, a student to analyse). Steps that measure
speed run last and alone, with every core, so that their timings are not shared with another job.
Every step trains in `<id>.new` and replaces its old folder only once it has finished.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import time

from kd_analysis.runs import RunStore, layout
from kd_analysis.runs.kinds import exclusive_kinds
from kd_analysis.training.worker import hold_device_queue

Step = tuple[str, str, dict]  # run id, job kind, config
logger = logging.getLogger(__name__)
EXCLUSIVE_KINDS = exclusive_kinds()


def dependencies(plan: list[Step]) -> dict[str, set[str]]:
    """Run id -> the planned run ids its config names as a whole path part or string (not as a prefix)."""
    ids = [run_id for run_id, _, _ in plan]
    out = {}
    for run_id, _, config in plan:
        text = json.dumps(config)
        out[run_id] = {
            other for other in ids if other != run_id and re.search(rf"(?<![\w.-]){re.escape(other)}(?![\w.-])", text)
        }
    return out


def default_jobs() -> int:
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def run_plan(store: RunStore, plan: list[Step], jobs: int = 1) -> list[str]:
    """Run every step; returns the run ids finished, in the order they finished. Raises on the first failure
    (after the steps already running have ended: no folder is left half-renamed)."""
    started = time.perf_counter()
    exclusive = [step for step in plan if step[1] in EXCLUSIVE_KINDS]
    rest = [step for step in plan if step[1] not in EXCLUSIVE_KINDS]
    done = _serial(store, rest) if jobs <= 1 or len(rest) <= 1 else _parallel(store, rest, jobs)
    done += _serial(store, exclusive)
    logger.info(f"{len(done)} steps in {_minutes(time.perf_counter() - started)} ({jobs} at a time)")
    return done


def _serial(store: RunStore, plan: list[Step]) -> list[str]:
    from kd_analysis.training.worker import run_one

    done = []
    for run_id, kind, config in plan:
        clock = time.perf_counter()
        tmp_id = _prepare(store, run_id, kind, config)
        run_one(store.get(tmp_id), store)
        _finish(store, run_id, tmp_id, time.perf_counter() - clock)
        done.append(run_id)
    return done


def _parallel(store: RunStore, plan: list[Step], jobs: int) -> list[str]:
    needs = dependencies(plan)
    pending, done = list(plan), []
    running: dict[futures.Future, tuple[Step, tuple[str, float]]] = {}
    failed: list[BaseException] = []
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")  # fork after torch has started threads can hang
    locks = hold_device_queue(store.root)  # the workers skip the queue: this plan holds it for them
    with (
        locks_closed(locks),
        futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool,
    ):
        while pending or running:
            unfinished = {run_id for run_id, _, _ in pending} | {step[0] for step, _ in running.values()}
            for step in list(pending):
                if failed or len(running) >= jobs:
                    break
                if needs[step[0]] & unfinished:
                    continue
                pending.remove(step)
                tmp_id = _prepare(store, *step)
                running[pool.submit(_execute, str(store.root), tmp_id)] = (step, (tmp_id, time.perf_counter()))
            if not running:
                if pending and not failed:  # nothing runs and nothing may start: the configs name each other
                    raise RuntimeError(f"these steps wait for each other: {', '.join(s[0] for s in pending)}")
                break
            finished, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for future in finished:
                (run_id, _, _), (tmp_id, clock) = running.pop(future)
                try:
                    future.result()
                    _finish(store, run_id, tmp_id, time.perf_counter() - clock)
                    done.append(run_id)
                except Exception as exc:
                    failed.append(exc)
    if failed:
        raise failed[0]
    return done


@contextlib.contextmanager
def locks_closed(locks: list):
    try:
        yield
    finally:
        for fh in locks:
            fh.close()


def _init_worker(threads: int) -> None:
    import torch

    from kd_analysis.training.shared_teacher import share_in_this_process
    from kd_analysis.training.worker import queue_held_by_parent

    torch.set_num_threads(threads)
    queue_held_by_parent()
    share_in_this_process()  # students of one teacher that land in this process share its outputs


def _execute(root: str, tmp_id: str) -> None:
    from kd_analysis.training.worker import run_one

    store = RunStore(root)
    run_one(store.get(tmp_id), store)


def _prepare(store: RunStore, run_id: str, kind: str, config: dict) -> str:
    logger.info(f"{run_id}: {config['name']}")
    tmp_id = f"{run_id}.new"
    shutil.rmtree(store.root / tmp_id, ignore_errors=True)
    store.create(kind, config, run_id=tmp_id, name=config["name"], reference=True)
    return tmp_id


def _finish(store: RunStore, run_id: str, tmp_id: str, seconds: float) -> None:
    status = store.get(tmp_id).status()
    if status.get("state") != "finished":
        raise RuntimeError(f"{run_id} did not finish: {status.get('reason')} (see {store.root / tmp_id}/log.txt)")
    final = store.root / run_id
    if final.exists():
        shutil.rmtree(final)
    os.replace(store.root / tmp_id, final)
    unpoint(final, tmp_id, run_id)
    metrics = [m for m in store.get(run_id).metrics() if "eval_accuracy" in m]
    result = f"eval accuracy {metrics[-1]['eval_accuracy']:.3f}" if metrics else "done"
    logger.info(f"{run_id}: {result} in {_minutes(seconds)}")


def unpoint(folder, tmp_id: str, run_id: str) -> None:
    """Artefacts that recorded the temporary folder name (a checkpoint path in result.json, the run id of every
    per-example record) name the final one."""
    for name in (layout.RESULT, layout.PREDICTIONS):
        path = folder / name
        if path.exists():
            path.write_text(path.read_text(encoding="utf-8").replace(tmp_id, run_id), encoding="utf-8")


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s" if seconds >= 60 else f"{seconds:.1f} s"
