"""Simulated identity-proofing providers, driven by tests and the demo.

Two kinds, as the portal offers them: instant knowledge-based proofing (credit
bureau questions; United States only) and a live video session with an agent.
Outcomes are injectable: a test says "this person fails" and the provider
fails them, so every branch of the lifecycle can be exercised.
"""

from __future__ import annotations

import dataclasses
import hashlib

#: Knowledge-based questions of the kind credit bureaus ask.
QUESTION_TEMPLATES = (
    ("street", "Which of these streets have you lived on?", ("Maple Ave", "Oak St", "Pine Rd", "Cedar Ln")),
    ("lender", "Which lender holds a loan in your name?", ("First Harbor", "Northwind", "Bluegate", "Summit Trust")),
    ("county", "In which county did you live in 2019?", ("Kings", "Travis", "Cook", "Maricopa")),
)


@dataclasses.dataclass(frozen=True)
class Question:
    """One multiple-choice question."""

    id: str
    text: str
    choices: tuple[str, ...]


class InstantProofingProvider:
    """Knowledge-based proofing: questions, graded against the bureau's (simulated) records.

    ``set_outcome(account_id, passed)`` overrides grading for one account.
    """

    def __init__(self) -> None:
        self._outcomes: dict[str, bool] = {}

    def set_outcome(self, account_id: str, passed: bool) -> None:
        """Make the next attempt of ``account_id`` pass or fail whatever is answered."""
        self._outcomes[account_id] = passed

    def questions(self, account_id: str) -> list[Question]:
        """The questions for this person."""
        return [Question(qid, text, choices) for qid, text, choices in QUESTION_TEMPLATES]

    def correct_answers(self, account_id: str) -> dict[str, str]:
        """What the bureau's records say (the demo's applicant knows their own history)."""
        answers = {}
        for qid, _, choices in QUESTION_TEMPLATES:
            digest = hashlib.sha256(f"{account_id}:{qid}".encode()).digest()
            answers[qid] = choices[digest[0] % len(choices)]
        return answers

    def grade(self, account_id: str, answers: dict[str, str]) -> bool:
        """Whether the answers prove the identity."""
        if account_id in self._outcomes:
            return self._outcomes.pop(account_id)
        return answers == self.correct_answers(account_id)


class VideoAgent:
    """A live video session: the agent checks the ID document and decides.

    ``set_outcome(account_id, passed, reason)`` decides the next session of that account;
    by default the agent passes a person whose ID matches their legal name.
    """

    def __init__(self, name: str = "Agent Rivera") -> None:
        self.name = name
        self._outcomes: dict[str, tuple[bool, str]] = {}

    def set_outcome(self, account_id: str, passed: bool, reason: str = "") -> None:
        """Make the next session of ``account_id`` pass or fail."""
        self._outcomes[account_id] = (passed, reason)

    def decide(self, account_id: str) -> tuple[bool, str]:
        """The agent's decision for this person's session."""
        return self._outcomes.pop(account_id, (True, "ID document matches the legal name"))
