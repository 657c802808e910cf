"""`DaskOracle`: the full-data sums of `Oracle` as a map-reduce over a Dask cluster.

Newton-Krylov spends most of its time in the global (full-data) gradient, and full-batch
solvers in full-data H v products. `DaskOracle` is an `Oracle` whose ``batch=None``
evaluations run on the workers of any ``dask.distributed`` scheduler; minibatch
evaluations stay on this process, where they are cheap and where the solver is.

Design (see docs/distributed.md for usage and measurements):

- **Shards are tasks, not scattered data.** At construction the data is split into one
  shard per worker (``shards=`` for more), each a run of whole chunks, and each shard is
  created by a task whose arguments are the shard's rows and the pickled module and loss.
  Dask keeps the results on the workers (the futures are held until `close`), so the data
  crosses the network once. Scattered data (``client.scatter``) is *not* used: when its
  worker dies it is gone, and every later evaluation would fail; a task's result lost with
  its worker is recomputed by the scheduler from the task, on another worker, with no help
  from here. The price is that the scheduler keeps the task arguments (one copy of the
  data) for that recomputation.
- **One module copy per shard,** unpickled once on the worker (not per call), with the
  per-call ``saved`` contexts stripped before pickling. Every `mcnet.nn` module pickles
  (NumPy arrays, traced graphs included); cloudpickle also carries modules defined in a
  user's ``__main__``.
- **Per call, one small task** carries the parameter vector, the directions, the train/eval
  flags and the module's buffers (BatchNorm running statistics). Every shard's task depends
  on it, so the client sends P floats once per evaluation; workers fetch it from each other,
  and if its worker dies it is recomputed like the shards.
- **Each shard sums its chunks** -- the very chunks of ``chunk_size`` examples that `Oracle`
  uses -- exactly as `Oracle._full_data_mean` does: the chunk's result times chunk size / n,
  in float64. The
  client adds the shard sums in shard order (through a tree of tasks, ``fan_in`` at a time,
  when there are more than ``fan_in`` shards), so results are reproducible and equal the
  single-process ones up to the order of the additions.
- **Nothing waits forever.** Connecting to an address first asks the scheduler for its
  identity under ``timeout`` (``distributed.Client`` itself can wait forever on a port
  that accepts connections but never answers); then up to ``timeout`` for the workers.
  ``call_timeout`` bounds each evaluation (None: as long as it takes).

Stateful layers: the client's modules drive train/eval mode and BatchNorm running
statistics on the workers at every call, but masks that Dropout draws on a worker are that
worker's, and running statistics updated by train-mode passes on the workers are not sent
back; a warning says so when the module has such layers.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import inspect
import itertools
import os
import pickle
import uuid
import warnings
import weakref
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

from mcnet.algebra.multicomplex import array_module
from mcnet.nn.dropout import Dropout
from mcnet.nn.module import Module, call_state_set_aside
from mcnet.nn.objective import Objective
from mcnet.solvers.base import check_count
from mcnet.training.oracle import DEFAULT_TIMEOUT, Oracle
from mcnet.training.scheduler import SchedulerError, probe_scheduler
from mcnet.training.shards import Call, Shard, add_partials, evaluate_shard, identity

INSTALL_HINT = 'pip install "mcnet[distributed]"'
# a scheduler's handshake is a few hundred bytes; anything past this is not one
_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def require_dask() -> ModuleType:
    """The ``distributed`` package, or an ImportError saying how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "evaluating on a Dask cluster (scheduler=..., --scheduler) needs Dask's "
            f"distributed scheduler, which is not installed: {INSTALL_HINT}"
        ) from exc
    return distributed


class DaskOracle(Oracle):
    """An `Oracle` whose full-data evaluations are a map-reduce over Dask workers.

    ``scheduler``: "local" starts a ``LocalCluster`` of ``workers`` processes (default: one
    per core) with one thread each, on 127.0.0.1 and without a dashboard; an address
    ("tcp://host:8786") connects to a running scheduler (``workers``: wait for that many);
    a ``distributed.Client`` or a cluster object is used as it is. What this object started,
    `close` (or leaving a ``with`` block, or garbage collection) stops. ``shards``: pieces of
    the data, each a run of whole chunks of ``chunk_size`` examples (default one per
    worker). ``timeout``: seconds to reach the scheduler, see the workers and place the
    data; ``call_timeout``: seconds per full-data evaluation (None: no limit). ``fan_in``:
    partial sums added per task when there are more shards than that.
    """

    def __init__(
        self,
        objective: Objective,
        data: tuple[Any, Any],
        chunk_size: int = 2048,
        *,
        scheduler: Any = "local",
        workers: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        call_timeout: float | None = None,
        shards: int | None = None,
        fan_in: int = 8,
    ) -> None:
        distributed = require_dask()
        if workers is not None:
            workers = check_count("workers", workers, 1)
        if shards is not None:
            shards = check_count("shards", shards, 1)
        fan_in = check_count("fan_in", fan_in, 2)
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        if call_timeout is not None and not call_timeout > 0:
            raise ValueError(f"call_timeout must be positive seconds or None, got {call_timeout!r}")
        super().__init__(objective, data, chunk_size)
        _warn_about_stateful_layers(objective.module)
        self._session = _Session(
            distributed, scheduler, workers, float(timeout), call_timeout, fan_in
        )
        # The cluster's processes go away with this object even without close().
        self._finalizer = weakref.finalize(self, self._session.close)
        try:
            self._session.place_shards(
                self.data,
                self.size,
                chunk_size,
                objective.module,
                objective.loss,
                self.dtype,
                shards,
            )
        except BaseException:
            self.close()
            raise
        # A stand-in that forwards every Objective method, not an Objective subclass.
        self.objective = _ClusterObjective(  # type: ignore[assignment]
            self.objective, self._session, self.dtype
        )

    # --- the cluster ------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The ``distributed.Client`` in use."""
        return self._session.client

    @property
    def workers(self) -> list[str]:
        """The workers' addresses when the shards were placed."""
        return list(self._session.addresses)

    @property
    def shards(self) -> int:
        """How many pieces the data was placed in."""
        return self._session.shard_count

    def close(self) -> None:
        """Release the shards and stop what this oracle started (client, LocalCluster);
        batch evaluations keep working, full-data ones raise afterwards."""
        self._finalizer()

    def __enter__(self) -> DaskOracle:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"DaskOracle({self.size} examples in {self.shards} shards on "
            f"{len(self.workers)} workers at {self._session.address})"
        )

    # --- the map-reduce ---------------------------------------------------------------------
    def _full_data_mean(self, evaluate):
        # Every full-data evaluation of Oracle calls self.objective.<method>(..., batch);
        # the cluster objective recognises this marker and answers from the cluster.
        return evaluate(FULL_DATA)


class _FullData:
    """The batch that stands for "all the training data, on the cluster"."""

    def __repr__(self) -> str:
        return "FULL_DATA"


FULL_DATA = _FullData()


class _ClusterObjective:
    """The local `Objective`, except that a method called with the FULL_DATA batch is
    evaluated on every shard and reduced; results come back in the local dtype and device,
    as `Oracle._full_data_mean` returns them."""

    def __init__(self, local: Objective, session: _Session, dtype) -> None:
        self._local = local
        self._session = session
        self._dtype = dtype

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._local, name)
        if name.startswith("_") or not inspect.ismethod(attribute):
            return attribute  # .module, .loss, ...

        def method(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("batch") is FULL_DATA:
                kwargs = {k: v for k, v in kwargs.items() if k != "batch"}
            elif args and args[-1] is FULL_DATA:
                args = args[:-1]
            else:
                return attribute(*args, **kwargs)
            single, totals = self._session.map_reduce(name, args, kwargs, self._local.module)
            xp = array_module(self._local.module.parameters()[0].value.data)
            results = tuple(
                float(total) if isinstance(total, float) else xp.asarray(total.astype(self._dtype))
                for total in totals
            )
            return results[0] if single else results

        return method


# --- the client side ------------------------------------------------------------------------
class _Session:
    """A connection to a scheduler, the shards held there, and the calls made on them."""

    def __init__(
        self,
        distributed,
        scheduler: Any,
        workers: int | None,
        timeout: float,
        call_timeout: float | None,
        fan_in: int,
    ) -> None:
        self.distributed = distributed
        self.timeout = timeout
        self.call_timeout = call_timeout
        self.fan_in = fan_in
        self.token = uuid.uuid4().hex[:12]
        self.calls = itertools.count()
        self.shard_futures: list[Any] = []
        self.shard_count = 0
        self.addresses: list[str] = []
        self.cluster: Any = None  # a LocalCluster started here
        self.client: Any = None
        self.owns_client = False
        self.closed = False
        self.address = "local" if scheduler == "local" else _describe(scheduler)
        if scheduler == "local":
            import dask

            # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also fixes glibc's
            # mmap threshold at 128 KiB: every large temporary of a pass is then a fresh
            # mmap, which slows every pass of the global gradient.
            with dask.config.set({_MALLOC_TRIM: None}):
                self.cluster = distributed.LocalCluster(
                    n_workers=workers or os.cpu_count() or 1,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    # no dashboard, and Dask's small HTTP server (health, metrics) on a free
                    # loopback port rather than on 8787, which another cluster may hold
                    scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                )
            self.address = self.cluster.scheduler_address
            self.client = distributed.Client(self.cluster, timeout=timeout, set_as_default=False)
            self.owns_client = True
        elif isinstance(scheduler, distributed.Client):
            self.client = scheduler
        elif isinstance(scheduler, str) or hasattr(scheduler, "scheduler_address"):
            address = scheduler if isinstance(scheduler, str) else scheduler.scheduler_address
            self.address = address
            probe_scheduler(address, timeout)
            try:
                self.client = distributed.Client(address, timeout=timeout, set_as_default=False)
            except OSError as exc:
                raise SchedulerError(
                    f"cannot connect to the Dask scheduler at {address} within {timeout:g} s "
                    f"(timeout=): {exc}"
                ) from exc
            self.owns_client = True
        else:
            raise TypeError(
                "scheduler must be 'local', a scheduler address such as 'tcp://host:8786', "
                f"a distributed.Client or a Dask cluster, got {type(scheduler).__name__}"
            )
        try:
            self.client.wait_for_workers(workers or 1, timeout=timeout)
        except (TimeoutError, OSError) as exc:
            self.close()
            wanted = workers or 1
            raise SchedulerError(
                f"the Dask scheduler at {self.address} has fewer than {wanted} worker(s) "
                f"after {timeout:g} s (timeout=); start workers with `dask worker "
                f"{self.address}`"
            ) from exc

    def place_shards(
        self, data, n: int, chunk_size: int, module: Module, loss: Module, dtype, shards: int | None
    ) -> None:
        """One task per shard: its rows and the pickled module and loss, restricted loosely
        to one worker each (round robin) so that the shards spread over the cluster but a
        shard whose worker died is rebuilt anywhere.

        Shards are runs of whole chunks, the chunks `Oracle` uses: every chunk's result is
        then the single-process one (BatchNorm's batch statistics included), and only the
        order of the additions differs."""
        self.addresses = sorted(self.client.nthreads())
        chunks = -(-n // chunk_size)
        count = min(chunks, shards or len(self.addresses))
        if count < len(self.addresses):
            warnings.warn(
                f"DaskOracle: {n} examples in chunks of {chunk_size} make {chunks} chunk(s), "
                f"so only {count} of {len(self.addresses)} workers get data; a chunk_size of "
                f"at most {-(-n // len(self.addresses))} uses them all",
                UserWarning,
                stacklevel=3,
            )
        blob = _pickle_without_call_state(module, loss)
        inputs, targets = (_host(a) for a in data)
        if np.issubdtype(inputs.dtype, np.floating) and inputs.dtype != dtype:
            # the objective converts every chunk to the parameters' dtype anyway; converting
            # once here sends (and keeps) no more bytes than it needs
            inputs = inputs.astype(dtype)
        bounds = [min(n, chunk_size * (chunks * i // count)) for i in range(count + 1)]
        self.shard_count = count
        with _quiet_large_graphs():
            self.shard_futures = [
                self.client.submit(
                    Shard,
                    inputs[start:stop],
                    targets[start:stop],
                    blob,
                    n,
                    chunk_size,
                    key=f"mcnet-shard-{self.token}-{index}",
                    workers=[self.addresses[index % len(self.addresses)]],
                    allow_other_workers=True,
                    pure=False,
                )
                for index, (start, stop) in enumerate(itertools.pairwise(bounds))
            ]
        try:
            with self.client.as_current():  # wait() asks for the default client
                self.distributed.wait(self.shard_futures, timeout=self.timeout)
            for future in self.shard_futures:
                if future.status == "error":
                    future.result()  # raises the worker's exception
        except TimeoutError as exc:
            raise TimeoutError(
                f"placing {n} examples on the workers took longer than timeout={self.timeout:g} s"
            ) from exc
        except Exception as exc:
            raise RuntimeError(
                f"building the data shards on the workers failed ({type(exc).__name__}: {exc});"
                " every worker needs mcnet and the modules' code importable, in the same "
                "versions as here"
            ) from exc

    def map_reduce(
        self, method: str, args: tuple, kwargs: dict, module: Module
    ) -> tuple[bool, tuple]:
        """(whether the method returns one value, the float64 sums over all shards)."""
        if self.closed:
            raise RuntimeError("this DaskOracle is closed; create a new one")
        call = Call(
            method,
            tuple(_to_host(a) for a in args),
            {k: _to_host(v) for k, v in kwargs.items()},
            tuple(m.training for m in module.modules()),
            _buffers(module),
        )
        number = next(self.calls)
        with _quiet_large_graphs():
            # one task for the call's arguments: sent once, fetched by the workers from
            # each other, and recomputed if its worker dies
            call_future = self.client.submit(
                identity, call, key=f"mcnet-call-{self.token}-{number}", pure=False
            )
            partials = [
                self.client.submit(
                    evaluate_shard,
                    shard,
                    call_future,
                    pure=False,
                    key=f"mcnet-sum-{self.token}-{number}-{index}",
                )
                for index, shard in enumerate(self.shard_futures)
            ]
        level = 0
        while len(partials) > self.fan_in:
            level += 1
            partials = [
                self.client.submit(
                    add_partials,
                    *partials[i : i + self.fan_in],
                    pure=False,
                    key=f"mcnet-add-{self.token}-{number}-{level}-{i}",
                )
                for i in range(0, len(partials), self.fan_in)
            ]
        try:
            with self.client.as_current():
                self.distributed.wait(partials, timeout=self.call_timeout)
            results = self.client.gather(partials)
        except BaseException as exc:
            # stop what is still queued; on success the futures are simply dropped
            with contextlib.suppress(Exception):
                self.client.cancel([call_future, *partials])
            self._raise_clearly(method, exc)
            raise
        return results[0][0], add_partials(*results)[1]

    def _raise_clearly(self, method: str, exc: BaseException) -> None:
        """Timeouts and a lost scheduler as errors that say what happened and where."""
        if isinstance(exc, TimeoutError):
            raise TimeoutError(
                f"a full-data {method} on the cluster at {self.address} took longer than "
                f"call_timeout={self.call_timeout:g} s"
            ) from exc
        if isinstance(exc, concurrent.futures.CancelledError):  # Dask's FutureCancelledError
            raise SchedulerError(
                f"the full-data {method} was cancelled: the Dask scheduler at {self.address} "
                f"was lost or closed ({exc})"
            ) from exc

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            # forgotten before any worker goes, or the scheduler would rebuild them
            if self.shard_futures and self.client is not None:
                self.client.cancel(self.shard_futures)
        self.shard_futures = []
        with contextlib.suppress(Exception):
            if self.owns_client and self.client is not None:
                self.client.close(timeout=self.timeout)
        with contextlib.suppress(Exception):
            if self.cluster is not None:
                self.cluster.close(timeout=self.timeout)


# --- helpers --------------------------------------------------------------------------------
def _pickle_without_call_state(module: Module, loss: Module) -> bytes:
    """cloudpickle of (module, loss) without what the last evaluation kept for its backward
    (``saved``, a graph's per-call contexts): they can be many times the parameters."""
    import cloudpickle

    with call_state_set_aside(module, loss):
        return cloudpickle.dumps((module, loss), protocol=pickle.HIGHEST_PROTOCOL)


def _buffers(module: Module) -> dict[str, dict[str, np.ndarray]]:
    """The module's buffers (BatchNorm running statistics) by module name: a worker's copy
    evaluates in eval mode with this process's statistics, however they have moved."""
    return {
        prefix: {k: np.asarray(v) for k, v in m._buffers.items()}
        for prefix, m in module.named_modules()
        if m._buffers
    }


def _warn_about_stateful_layers(module: Module) -> None:
    dropout = [
        name or type(m).__name__
        for name, m in module.named_modules()
        if isinstance(m, Dropout) and m.p > 0
    ]
    running = [name or type(m).__name__ for name, m in module.named_modules() if m._buffers]
    if dropout or running:
        details = []
        if dropout:
            details.append(f"Dropout masks ({', '.join(dropout)}) are drawn by each worker")
        if running:
            details.append(
                f"running statistics ({', '.join(running)}) updated by train-mode passes "
                "on the workers are not sent back"
            )
        warnings.warn(
            "DaskOracle: in train mode its full-data evaluations differ from Oracle's: "
            + "; ".join(details)
            + ". Eval mode and minibatch evaluations are unaffected.",
            UserWarning,
            stacklevel=3,
        )


def _host(a: Any) -> Any:
    return a if array_module(a) is np else a.get()


def _to_host(value: Any) -> Any:
    """CuPy arrays (also inside lists and tuples) as NumPy arrays, for sending."""
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(v) for v in value)
    return value.get() if array_module(value) is not np else value


def _describe(scheduler: Any) -> str:
    """An address for messages, whatever form the scheduler was given in."""
    if isinstance(scheduler, str):
        return scheduler
    address = getattr(scheduler, "scheduler_address", None)
    if address is None:
        address = getattr(getattr(scheduler, "scheduler", None), "address", None)
    return address or type(scheduler).__name__


@contextlib.contextmanager
def _quiet_large_graphs() -> Iterator[None]:
    # The shards travel inside their tasks on purpose (that is what makes them
    # recomputable); Dask's advice to scatter large arguments does not apply here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ll]arge graph.*")
        warnings.filterwarnings("ignore", message=".*[Ll]arge object.*")
        yield
