"""The run: read the fleet, import and register it, then drive the validator over HTTP and check every answer.

One asyncio event loop (uvloop when installed) and one aiohttp session whose
keep-alive pool is sized to the concurrency. Closed loop (``concurrency``):
that many clients, each sending its next request as soon as the last is
answered. Open loop (``rate``): requests are due at fixed intervals, at most
``max_in_flight`` outstanding; a request's latency counts from when it was due,
so a slow validator cannot hide its queue (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import math
import random
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any, TextIO, TypeVar

import aiohttp
import numpy as np

from loadgen.api import Dialect, dialect_for, error_text, import_request
from loadgen.config import FleetTooSmallError, LoadConfig, LoadgenError
from loadgen.fleet import Fleet, load_state, read_fleet, save_state
from loadgen.report import Report, Tally, WrongAnswer, progress_line
from loadgen.schedule import REPLAY_COOLDOWN_NS, Action, Scheduler
from loadgen.tokens import VToken
from validator.kernel import get_backend
from vtoken.clock import NS_PER_SECOND

#: Random codes go to at most this many decoys unless ``--decoys`` says otherwise (one per 20 tokens).
DEFAULT_MAX_DECOYS = 16
DECOY_SHARE = 20
#: Registrations in flight at once.
REGISTER_CONCURRENCY = 64
#: Seconds between progress lines.
PROGRESS_INTERVAL_S = 1.0
#: Idle keep-alive connections are closed after this long: before the server's own keep-alive timeout
#: (uvicorn 5 s, gunicorn 2 s), so a request never goes out on a connection the server is closing.
KEEPALIVE_S = 1.5
#: A note says the fleet limited the run when clients waited this share of the time for a token.
STARVED_NOTE_SHARE = 0.05
#: Registration waits at most this many TOTP periods for steps a previous run used to pass.
MAX_REGISTER_WAIT_PERIODS = 2


_T = TypeVar("_T")


def _run_async(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def decoy_count(config: LoadConfig, tokens: int) -> int:
    """How many tokens are set aside for random codes."""
    if config.decoys is not None:
        return config.decoys
    if config.random == 0:
        return 0
    return max(1, min(DEFAULT_MAX_DECOYS, tokens // DECOY_SHARE))


def plan(config: LoadConfig, genuine: list[VToken], decoys: list[VToken]) -> list[str]:
    """Refuse a load the fleet cannot carry (:class:`FleetTooSmallError`); notes on what bounds the run."""
    notes: list[str] = []
    total = len(genuine) + len(decoys)
    if config.genuine > 0 and not genuine:
        raise FleetTooSmallError(
            f"the fleet is too small: all {total} tokens are decoys for random codes; "
            "use a larger fleet or fewer --decoys"
        )
    totp = [t for t in genuine if not t.is_hotp]
    hotp = len(genuine) - len(totp)
    #: Genuine codes per second the TOTP tokens can take (one per token per step).
    totp_capacity = sum(NS_PER_SECOND / t.period_ns for t in totp)
    periods = sorted({t.period_ns // NS_PER_SECOND for t in totp})
    period_text = "/".join(f"{p} s" for p in periods)
    if config.concurrency is not None and config.genuine > 0 and len(genuine) < config.concurrency:
        raise FleetTooSmallError(
            f"the fleet is too small for --concurrency {config.concurrency}: it has {total} tokens, "
            f"{len(decoys)} of them decoys for random codes, leaving {len(genuine)}; a token takes one request "
            f"at a time, so {config.concurrency} clients need at least {config.concurrency} genuine tokens "
            f"(4× that when replays set tokens aside for {REPLAY_COOLDOWN_NS / NS_PER_SECOND:g} s): "
            "create a larger fleet (vtoken fleet create --count ...)"
        )
    if config.rate is not None and config.genuine > 0:
        wanted = config.rate * config.genuine
        if not hotp and wanted > totp_capacity:
            need = math.ceil(wanted * max(periods))
            raise FleetTooSmallError(
                f"the fleet is too small for --rate {config.rate:g}: that is {wanted:,.1f} genuine codes/s, but "
                f"{len(totp):,} TOTP tokens with {period_text} steps take at most {totp_capacity:,.1f}/s "
                f"(one code per token per step, the validator's replay rule); use at least {need:,} tokens, "
                "a lower --rate, or an HOTP fleet (vtoken fleet create --model hotp), whose tokens take codes at any rate"
            )
        cooling = config.rate * config.replays * REPLAY_COOLDOWN_NS / NS_PER_SECOND
        if cooling >= len(genuine):
            raise FleetTooSmallError(
                f"the fleet is too small for --rate {config.rate:g} with --replays {config.replays:g}: each replay "
                f"sets its token aside for {REPLAY_COOLDOWN_NS / NS_PER_SECOND:g} s (the validator throttles after a "
                f"failure), about {cooling:,.0f} tokens at a time, and the fleet has {len(genuine):,} genuine tokens"
            )
    if totp:
        limit = f"{totp_capacity:,.1f}" if not hotp else f"{totp_capacity:,.1f} (TOTP part)"
        notes.append(
            f"TOTP tokens take one genuine code per step: at most {limit} genuine codes/s from "
            f"{len(totp):,} tokens with {period_text} steps"
        )
        if config.requests is not None and config.duration_s is None and not hotp and config.genuine > 0:
            eta = config.requests * config.genuine / totp_capacity
            if eta > 60:
                notes.append(f"{config.requests:,} requests need at least {eta:,.0f} s with this fleet")
    return notes


class _Runner:
    """The asyncio side of one run."""

    def __init__(
        self,
        config: LoadConfig,
        dialect: Dialect,
        fleet: Fleet,
        genuine: list[VToken],
        decoys: list[VToken],
        scheduler: Scheduler,
        tally: Tally,
        notes: list[str],
        progress: TextIO | None,
    ) -> None:
        self.config = config
        self.dialect = dialect
        self.fleet = fleet
        self.genuine = genuine
        self.decoys = decoys
        self.sched = scheduler
        self.tally = tally
        self.notes = notes
        self.progress = progress
        self.stop = False
        #: The fleet was imported by this run (the validator's earlier state for it, if any, is gone).
        self.imported = False
        self.issued = 0
        self.inflight = 0
        self.starved_s = 0.0
        self.max_lag_s = 0.0
        self.seconds = 0.0
        #: CPU time this process spent during the load (so a client-bound run shows itself).
        self.cpu_s = 0.0
        self.deadline = math.inf
        self.session: aiohttp.ClientSession | None = None
        self.changed: asyncio.Event | None = None

    # --- the whole run -----------------------------------------------------------------------------------

    async def main(self) -> None:
        config = self.config
        self.changed = asyncio.Event()
        connector = aiohttp.TCPConnector(
            limit=config.clients + REGISTER_CONCURRENCY, limit_per_host=0, keepalive_timeout=KEEPALIVE_S,
            ttl_dns_cache=None,
        )
        timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self._interrupt)
            handler = True
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            handler = False
        try:
            async with aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers=self.dialect.check_headers, auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            ) as session:
                self.session = session
                await self._preflight()
                if config.import_fleet:
                    await self._import()
                if config.register:
                    await self._register_all()
                else:
                    for token in [*self.genuine, *self.decoys]:
                        token.registered = True
                if self.stop:
                    return
                await self._load()
        finally:
            if handler:
                loop.remove_signal_handler(signal.SIGINT)

    def _interrupt(self) -> None:
        if not self.stop:
            self.notes.append("interrupted (Ctrl-C): the results cover the requests answered so far")
        self.stop = True
        if self.changed is not None:
            self.changed.set()

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        assert self.session is not None
        async with self.session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    async def _preflight(self) -> None:
        assert self.session is not None
        try:
            async with self.session.get(self.config.url + "/") as resp:
                await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise LoadgenError(f"cannot reach the validator at {self.config.url}: {_describe(exc)}") from None

    async def _import(self) -> None:
        url, body, headers = import_request(self.config, self.fleet.pskc_path.read_bytes())
        try:
            status, raw = await self._post(url, body, headers)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise LoadgenError(f"the import failed: {_describe(exc)}") from None
        if status != 200:
            raise LoadgenError(f"the validator refused the import of {self.fleet.pskc_path}: {error_text(status, raw)}")
        self.imported = True

    # --- registration ------------------------------------------------------------------------------------

    async def _register_all(self) -> None:
        tokens = [*self.genuine, *self.decoys]
        now = time.time_ns()
        # A TOTP token registers with the codes of its previous and current steps; both must be past
        # the steps a previous run used, or the validator rightly refuses them as replays.
        wait_ns = max((t.step_start_ns(t.last_step + 2) - now for t in tokens if not t.is_hotp and t.last_step >= 0),
                      default=0)
        if wait_ns > 0:
            longest = max(t.period_ns for t in tokens if not t.is_hotp)
            if wait_ns > MAX_REGISTER_WAIT_PERIODS * longest:
                raise LoadgenError("the run state says TOTP steps in the future were used: is the clock right?")
            self._say(f"waiting {wait_ns / NS_PER_SECOND:.1f} s for TOTP steps a previous run used to pass")
            await asyncio.sleep(wait_ns / NS_PER_SECOND)
        gate = asyncio.Semaphore(REGISTER_CONCURRENCY)
        self._say(f"registering {len(tokens):,} tokens")
        await asyncio.gather(*(self._register(token, gate) for token in tokens))
        if self.tally.register_wrong and (
            not self.tally.registered or (self.config.genuine > 0 and not any(t.registered for t in self.genuine))
        ):
            first = self.tally.register_wrong[0]
            raise LoadgenError(
                f"{len(self.tally.register_wrong):,} of {len(tokens):,} tokens could not be registered "
                f"(first: {first.serial}: {first.reason}){_hint(first)}"
            )

    async def _register(self, token: VToken, gate: asyncio.Semaphore) -> None:
        async with gate:
            if token.is_hotp:
                unit = token.next_counter + 1
                token.next_counter = unit + 1  # both counters are used up, whatever the answer
            else:
                unit = token.device_step(time.time_ns())
            code1, code2 = token.code(unit - 1), token.code(unit)
            url, body = self.dialect.register(token, code1, code2)
            try:
                status, raw = await self._post(url, body, self.dialect.register_headers)
                accepted, reason = self.dialect.parse_register(status, raw)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                status, accepted, reason = 0, None, _describe(exc)
            if not token.is_hotp:
                token.last_step = max(token.last_step, unit)
            if accepted:
                token.registered = True
                token.not_before_ns = 0  # a registration clears the failure count and its throttle
                self.tally.registered += 1
            else:
                token.retired = True
                self.tally.register_wrong.append(WrongAnswer(token.serial, "register", status, reason))

    # --- load --------------------------------------------------------------------------------------------

    async def _load(self) -> None:
        config = self.config
        self.sched.start(time.time_ns())
        started = time.perf_counter()
        cpu = time.process_time()
        if config.duration_s is not None:
            self.deadline = started + config.duration_s
        ticker = asyncio.create_task(self._ticker(started)) if self.progress is not None else None
        try:
            if config.concurrency is not None:
                await asyncio.gather(*(self._worker() for _ in range(config.concurrency)))
            else:
                await self._open_loop(started)
        finally:
            self.seconds = time.perf_counter() - started
            self.cpu_s = time.process_time() - cpu
            if ticker is not None:
                ticker.cancel()
                try:
                    await ticker
                except asyncio.CancelledError:
                    pass
                self._line(self._status(started), final=True)

    def _exhausted(self) -> bool:
        requests = self.config.requests
        return (
            self.stop
            or (requests is not None and self.issued >= requests)
            or time.perf_counter() >= self.deadline
        )

    async def _acquire(self) -> Action | None:
        """The next action, waiting for a token to come free if need be; None when the run is over."""
        sched = self.sched
        changed = self.changed
        assert changed is not None
        while not self._exhausted():
            now = time.time_ns()
            action = sched.take(now)
            if action is not None:
                self.issued += 1
                return action
            due = sched.next_due_ns()
            if due is None and self.inflight == 0:
                if not self.stop:
                    self.notes.append("stopped early: no token can take another code (every genuine token retired)")
                self.stop = True
                changed.set()
                return None
            timeout = None if due is None else max(0.0, (due - now) / NS_PER_SECOND)
            if self.deadline < math.inf:
                left = max(0.0, self.deadline - time.perf_counter())
                timeout = left if timeout is None else min(timeout, left)
            waited = time.perf_counter()
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            self.starved_s += time.perf_counter() - waited
        return None

    async def _worker(self) -> None:
        while True:
            action = await self._acquire()
            if action is None:
                return
            self.inflight += 1
            await self._send(action, time.perf_counter())

    async def _open_loop(self, started: float) -> None:
        interval = 1.0 / (self.config.rate or 1.0)
        limit = self.config.max_in_flight
        changed = self.changed
        assert changed is not None
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        while not self._exhausted():
            due = started + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            while self.inflight >= limit and not self.stop:
                changed.clear()
                await changed.wait()
            action = await self._acquire()
            if action is None:
                break
            self.max_lag_s = max(self.max_lag_s, time.perf_counter() - due)
            self.inflight += 1
            task = asyncio.create_task(self._send(action, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.gather(*tasks)

    async def _send(self, action: Action, since: float) -> None:
        """Send one check (the caller counted it in flight), check the answer, hand the token back."""
        token = action.token
        url, body = self.dialect.check(token, action.code)
        try:
            assert self.session is not None
            async with self.session.post(url, data=body) as resp:  # the session's headers are the check's
                status = resp.status
                raw = await resp.read()
            accepted, reason = self.dialect.parse_check(status, raw)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            status, accepted, reason = 0, None, _describe(exc)
        finally:
            self.inflight -= 1
        right = self.tally.record(action.kind, token.serial, time.perf_counter() - since, status, accepted, reason)
        self.sched.done(action, right, time.time_ns())
        assert self.changed is not None
        self.changed.set()

    # --- progress ----------------------------------------------------------------------------------------

    def _status(self, started: float, window: tuple[int, float] | None = None) -> str:
        now = time.perf_counter()
        n = self.tally.requests
        since_n, since_t = window if window is not None else (0, started)
        recent = (n - since_n) / (now - since_t) if now > since_t else 0.0
        latencies = np.array(self.tally.latencies[since_n:n], dtype=np.float64)
        return progress_line(now - started, self.tally, recent, latencies)

    async def _ticker(self, started: float) -> None:
        mark = (0, started)
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            self._line(self._status(started, mark))
            mark = (self.tally.requests, time.perf_counter())

    def _line(self, text: str, *, final: bool = False) -> None:
        stream = self.progress
        if stream is None:
            return
        if stream.isatty():
            stream.write("\r" + text + ("\n" if final else ""))
        else:
            stream.write(text + "\n")
        stream.flush()

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.write(text + "\n")
            self.progress.flush()


def _describe(exc: BaseException) -> str:
    """An exception as one short line."""
    return f"{type(exc).__name__}: {exc}"[:160] if str(exc) else type(exc).__name__


def _hint(first: WrongAnswer) -> str:
    reason = first.reason.lower()
    if first.status == 404 or "unknown" in reason or "not exist" in reason:
        return ": import the fleet first (--import, or 'vtoken validator import')"
    if "no-pair" in reason or "no consecutive pair" in reason:
        return (": the validator has seen later codes of these tokens than the run state records; "
                "use the state file of the earlier runs (--state) or a freshly imported validator")
    if first.status in (401, 403):
        return ": check --api-key / --admin-token"
    return ""


#: Reading a fleet reports progress every this many token files.
READ_PROGRESS_EVERY = 1000


def _reading(progress: TextIO | None, config: LoadConfig) -> Callable[[int, int], None] | None:
    """A progress callback for reading the fleet's token files (None: no progress stream)."""
    if progress is None:
        return None
    progress.write(f"reading the fleet in {config.fleet}\n")
    progress.flush()

    def report(done: int, total: int) -> None:
        if progress.isatty() and (done % READ_PROGRESS_EVERY == 0 or done == total):
            progress.write(f"\r  {done:,} of {total:,} token files" + ("\n" if done == total else ""))
            progress.flush()

    return report


def state_key(config: LoadConfig) -> str:
    """Which validator the run state entry belongs to (its base URL, whichever API is spoken)."""
    return config.url


def _used(tokens: list[VToken]) -> dict[str, int]:
    used: dict[str, int] = {}
    for t in tokens:
        value = t.next_counter - 1 if t.is_hotp else t.last_step
        if value >= 0:
            used[t.serial] = value
    return used


def run_load(config: LoadConfig, *, progress: TextIO | None = None) -> Report:
    """Run the load ``config`` describes and return its report (progress lines on ``progress``, if given)."""
    started_ns = time.time_ns()
    fleet = read_fleet(config.fleet, now_ns=started_ns, password=config.password, psk=config.psk,
                       progress=_reading(progress, config))
    backend = get_backend()
    state_path = config.state_file()
    key = state_key(config)
    used, not_before = load_state(state_path, key)
    if config.import_fleet:  # a validator that can import the fleet has never seen it: start afresh
        used, not_before = {}, {}
    tokens = [VToken(t, backend, used=used.get(t.serial), not_before_ns=not_before.get(t.serial, 0))
              for t in fleet.tokens]
    count = decoy_count(config, len(tokens))
    if count >= len(tokens) and config.genuine > 0:
        raise FleetTooSmallError(
            f"the fleet is too small: {len(tokens)} usable tokens cannot spare {count} decoys for random codes "
            "and keep some for genuine codes; use a larger fleet or fewer --decoys"
        )
    decoys = tokens[len(tokens) - count:] if count else []
    genuine = tokens[: len(tokens) - count]
    for d in decoys:
        d.decoy = True
    notes = plan(config, genuine, decoys)
    if fleet.skipped:
        notes.append(f"{len(fleet.skipped)} tokens left out: " + ", ".join(f"{s} ({why})" for s, why in fleet.skipped[:5]))
    if progress is not None:
        for note in notes:
            progress.write(f"note: {note}\n")
    rng = random.Random(config.seed)
    sched = Scheduler(genuine, decoys, replays=config.replays, random_share=config.random, rng=rng)
    tally = Tally()
    runner = _Runner(config, dialect_for(config), fleet, genuine, decoys, sched, tally, notes, progress)
    try:
        _run_async(runner.main())
    finally:
        used_now = _used(tokens)
        if used_now or runner.imported:
            later = {t.serial: t.not_before_ns for t in tokens if t.not_before_ns > time.time_ns()}
            save_state(state_path, key, {**({} if runner.imported else used), **used_now}, later)
    if sched.retired:
        notes.append(f"{sched.retired} tokens retired after a wrong answer to a genuine code")
    if sched.replays_skipped:
        notes.append(f"{sched.replays_skipped} replays not sent: the code also belonged to a later counter or step")
    clients = config.clients
    if runner.seconds > 0 and runner.starved_s > STARVED_NOTE_SHARE * clients * runner.seconds:
        share = runner.starved_s / (clients * runner.seconds)
        notes.append(
            f"clients waited {100 * share:.0f} % of the time for a token free to take a code: "
            f"the fleet ({len(genuine):,} genuine tokens) limited this run, not the validator"
        )
    return Report(
        url=config.url, api=config.api, mode=config.mode, concurrency=config.concurrency, rate=config.rate,
        fleet=fleet.describe(), tokens=len(tokens), decoys=len(decoys), seconds=runner.seconds, tally=tally,
        notes=notes, starved_s=runner.starved_s, max_lag_s=runner.max_lag_s, client_cpu_s=runner.cpu_s,
    )


__all__ = ["decoy_count", "plan", "run_load", "state_key"]
