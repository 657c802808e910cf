"""Checking a Dask scheduler's address before handing it to Dask: whether anything answers
there within the timeout, and whether what answers is a Dask scheduler."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

# A Dask scheduler's handshake is a few hundred bytes; a first length above this is not one.
_GREETING_LIMIT = 1 << 20


class SchedulerError(ConnectionError):
    """The Dask scheduler cannot be reached, does not answer, or has no workers in time."""


def probe_scheduler(address: str, timeout: float) -> None:
    """Ask the scheduler for its identity, giving up after ``timeout`` seconds.

    ``distributed.Client(address, timeout=...)`` keeps waiting on a port that accepts the
    connection but never answers (measured: forever on dask 2026.8), so this asks first, in
    a thread of its own (its own event loop: this works inside Jupyter's running loop too).
    """
    from distributed.comm import connect

    _check_greeting(address, timeout)

    async def identity() -> Any:
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    outcome: dict[str, Any] = {}

    def ask() -> None:
        try:
            outcome["reply"] = asyncio.run(asyncio.wait_for(identity(), timeout))
        except BaseException as exc:  # reported below, in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=ask, name="mcnet-scheduler-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)  # wait_for has already given up by then; this is a backstop
    error = outcome.get("error")
    if thread.is_alive() or isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        raise SchedulerError(
            f"the Dask scheduler at {address} did not answer within {timeout:g} s (timeout=): "
            "is that the scheduler's address (default port 8786), and is it running?"
        ) from error
    if error is not None:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s (timeout=): "
            f"{type(error).__name__}: {error}"
        ) from error
    reply = outcome.get("reply")
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        raise SchedulerError(
            f"{address} answered, but not as a Dask scheduler (got {str(reply)[:80]!r})"
        )


def _check_greeting(address: str, timeout: float) -> None:
    """Read the first 8 bytes a TCP scheduler sends, with plain sockets, within ``timeout``.

    A Dask scheduler speaks first: the little-endian length of its handshake, a few hundred
    bytes. Dask's own reader allocates whatever length the first 8 bytes spell, so a server
    that is not a scheduler (a web server, anything that sends text) would ask it for EiB;
    checked here, that is a one-line `SchedulerError` instead.
    """
    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme != "tcp":  # TLS, UCX and in-process addresses are left to Dask
        return
    greeting = b""
    try:
        with socket.create_connection(parse_host_port(location), timeout=timeout) as sock:
            sock.settimeout(timeout)
            while len(greeting) < 8 and (chunk := sock.recv(8 - len(greeting))):
                greeting += chunk
    except TimeoutError:
        raise SchedulerError(
            f"the Dask scheduler at {address} did not answer within {timeout:g} s (timeout=): "
            "is that the scheduler's address (default port 8786), and is it running?"
        ) from None
    except OSError as exc:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s (timeout=): {exc}"
        ) from exc
    if len(greeting) < 8 or int.from_bytes(greeting, "little") > _GREETING_LIMIT:
        raise SchedulerError(
            f"{address} answered, but not as a Dask scheduler (its first bytes: "
            f"{greeting!r}); is that the scheduler's address (default port 8786)?"
        )
