"""Who gets the next request, and with which code: the mix, the token pools, the validator's rules.

The rules a correct validator follows, and how the schedule respects them:

* one request per token at a time (a HOTP token's counters, a TOTP token's steps arrive in order);
* a TOTP token gets at most one genuine code per step, for a step after the last one it used;
* a replay repeats the code a token's last accepted check used, right after that accept, and
  only when that code matches no counter/step the validator could still accept;
* a replay is a failed check: the validator throttles the token for 1 s, so the token's next
  genuine check waits ``REPLAY_COOLDOWN_NS`` after the replay's answer;
* random codes go to decoys only (they end up throttled and locked; any refusal is right);
* a token whose genuine code was refused (a wrong answer) is retired, so one fault is not
  multiplied into a cascade of throttled refusals.

The mix is kept by deficit: each request goes to the kind furthest behind its share,
among the kinds that can be sent now; genuine codes fill in when replays are not possible.
"""

from __future__ import annotations

import collections
import heapq
import random

from loadgen.tokens import REPLAY_GUARD, TOTP_UNIQUE_STEPS, VToken

GENUINE = "genuine"
REPLAY = "replay"
RANDOM = "random"
KINDS = (GENUINE, REPLAY, RANDOM)
#: The validator delays the next try by 1 s after the first failure; we wait this long after the replay's answer.
REPLAY_COOLDOWN_NS = 1_500_000_000
#: TOTP: a replay must match none of the steps from the replayed one up to this many past the current one.
REPLAY_STEPS_AHEAD = 4


class Action:
    """One request to send: its kind, token, code, and the counter/step a genuine code is for."""

    __slots__ = ("kind", "token", "code", "unit")

    def __init__(self, kind: str, token: VToken, code: str, unit: int = -1) -> None:
        self.kind = kind
        self.token = token
        self.code = code
        self.unit = unit


class Scheduler:
    """The token pools and the mix. Single-threaded: call it from one event loop."""

    def __init__(
        self,
        tokens: list[VToken],
        decoys: list[VToken],
        *,
        replays: float,
        random_share: float,
        rng: random.Random,
    ) -> None:
        genuine = max(0.0, 1.0 - replays - random_share)
        self.shares = (genuine, replays, random_share)
        self.sent = [0, 0, 0]
        self.rng = rng
        self.tokens = tokens
        self.decoys = decoys
        self.ready: collections.deque[VToken] = collections.deque()
        self.waiting: list[tuple[int, int, VToken]] = []
        self._seq = 0
        self.replayable: collections.deque[VToken] = collections.deque()
        self.replay_ratio = replays / genuine if genuine else 0.0
        self.accepted = 0
        self.reserved = 0
        self.retired = 0
        #: Replays not sent because the code happened to match a counter/step the validator could accept.
        self.replays_skipped = 0
        #: TOTP steps not used because two steps near it share the code.
        self.steps_skipped = 0

    # --- pools -------------------------------------------------------------------------------------------

    def start(self, now_ns: int) -> None:
        """Put every registered genuine token on duty."""
        for token in self.tokens:
            if token.registered and not token.retired:
                self._on_duty(token, now_ns)

    def _wait_until(self, token: VToken, at_ns: int) -> None:
        self._seq += 1
        heapq.heappush(self.waiting, (at_ns, self._seq, token))

    def _on_duty(self, token: VToken, now_ns: int) -> None:
        """Back to genuine duty: at once (HOTP), or when its next step begins (TOTP); not while throttled."""
        at = token.not_before_ns
        if not token.is_hotp:
            at = max(at, token.step_start_ns(token.last_step + 1))
        if at > now_ns:
            self._wait_until(token, at)
        else:
            self.ready.append(token)

    def _release_due(self, now_ns: int) -> None:
        waiting = self.waiting
        while waiting and waiting[0][0] <= now_ns:
            self.ready.append(heapq.heappop(waiting)[2])

    def next_due_ns(self) -> int | None:
        """When the next waiting token comes back on duty (None: none is waiting)."""
        return self.waiting[0][0] if self.waiting else None

    @property
    def on_duty(self) -> int:
        """Tokens that can still take genuine codes (ready, waiting, in flight or reserved for a replay)."""
        return sum(1 for t in self.tokens if t.registered and not t.retired)

    # --- choosing ------------------------------------------------------------------------------------------

    def take(self, now_ns: int) -> Action | None:
        """The next request to send now, or None when nothing may be sent yet."""
        self._release_due(now_ns)
        sent, shares = self.sent, self.shares
        n1 = sent[0] + sent[1] + sent[2] + 1
        deficits = [shares[i] * n1 - sent[i] for i in range(3)]
        for i in sorted(range(3), key=deficits.__getitem__, reverse=True):
            if deficits[i] <= 0 or shares[i] == 0:
                break
            action = self._take(i, now_ns)
            if action is not None:
                sent[i] += 1
                return action
        # Nothing behind its share can go: a genuine code fills in, else a replay of a token set aside
        # for one (so a small fleet never stalls with every token waiting for its replay); never a random code.
        for i in (0, 1):
            if shares[i] > 0:
                action = self._take(i, now_ns)
                if action is not None:
                    sent[i] += 1
                    return action
        return None

    def _take(self, kind: int, now_ns: int) -> Action | None:
        if kind == 0:
            return self._genuine(now_ns)
        if kind == 1:
            return self._replay(now_ns)
        return self._random(now_ns)

    def _genuine(self, now_ns: int) -> Action | None:
        ready = self.ready
        while ready:
            token = ready.popleft()
            if token.retired:
                continue
            if token.is_hotp:
                counter = token.next_counter
                token.next_counter = counter + 1
                token.busy = True
                return Action(GENUINE, token, token.code(counter), counter)
            step = token.device_step(now_ns)
            if step <= token.last_step:  # woke a hair early
                self._on_duty(token, now_ns)
                continue
            code = token.code(step)
            token.last_step = step
            if len(token.key.find(step - TOTP_UNIQUE_STEPS, 2 * TOTP_UNIQUE_STEPS + 1, code)) > 1:
                self.steps_skipped += 1  # a neighbouring step shows the same code: use the next step
                self._on_duty(token, now_ns)
                continue
            token.busy = True
            return Action(GENUINE, token, code, step)
        return None

    def _replay(self, now_ns: int) -> Action | None:
        queue = self.replayable
        while queue:
            token = queue.popleft()
            if token.retired:
                continue
            code = token.last_code
            if token.is_hotp:
                lo, count = token.next_counter, REPLAY_GUARD
            else:
                lo = token.last_step + 1
                count = max(1, token.device_step(now_ns) + REPLAY_STEPS_AHEAD - lo + 1)
            if token.collides(code, lo, count):
                self.replays_skipped += 1
                self._on_duty(token, now_ns)
                continue
            token.busy = True
            return Action(REPLAY, token, code)
        return None

    def _random(self, now_ns: int) -> Action | None:
        if not self.decoys:
            return None
        decoy = self.decoys[self.rng.randrange(len(self.decoys))]
        return Action(RANDOM, decoy, decoy.random_code(self.rng, now_ns))

    # --- answers -------------------------------------------------------------------------------------------

    def done(self, action: Action, right: bool, now_ns: int) -> None:
        """Account for the answer to ``action`` (``right``: it is what a correct validator answers)."""
        kind, token = action.kind, action.token
        if kind == RANDOM:
            return
        token.busy = False
        if kind == GENUINE:
            if not right:
                token.retired = True
                self.retired += 1
                return
            token.last_code = action.code
            self.accepted += 1
            if self.replay_ratio and self.reserved < self.replay_ratio * self.accepted:
                self.reserved += 1
                self.replayable.append(token)
            else:
                self._on_duty(token, now_ns)
            return
        # A replay (right or not): the validator counted a failure (or, if wrong, accepted it).
        token.not_before_ns = now_ns + REPLAY_COOLDOWN_NS
        self._on_duty(token, now_ns)


__all__ = ["GENUINE", "KINDS", "RANDOM", "REPLAY", "REPLAY_COOLDOWN_NS", "Action", "Scheduler"]
