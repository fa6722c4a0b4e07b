"""What one test streams, where and how: rebuilt from Locust's options at every test start, because the web UI's
start form rewrites them before each start (samples, manifest, silence prefix, targets, routing, session settings).

No Locust here: a plan is built (and its errors seen) at init, at each test start and when the form is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..conversation import ConversationSpec
from ..corpus import Corpus, build_corpus
from ..errors import UserError
from ..gates import load_gates
from ..options import conversation_spec, server_urls, session_config
from ..samples import load_manifest, select
from ..session import SessionConfig, worker_name

TARGET_POLICIES = ("round_robin", "least_loaded")


@dataclass(frozen=True)
class TestPlan:
    """One test's inputs, shared by the process's users."""

    corpus: Corpus
    targets: list[str]
    policy: str
    session_cfg: SessionConfig  # its url is the first target's: each session gets its own from the recorder
    conversation: ConversationSpec | None


class PlanBuilder:
    """Builds plans, decoding the corpus again only when its options changed (decoding takes seconds)."""

    def __init__(self) -> None:
        self._corpus_key: tuple | None = None
        self._corpus: Corpus | None = None

    def build(self, opts: Any, host: str | None, check_gates: bool) -> TestPlan:
        """The plan of `opts` (Locust's parsed options) and `host`; a UserError names the option that is unusable."""
        targets = parse_targets(host)
        if opts.target_policy not in TARGET_POLICIES:
            raise UserError(f"--target-policy {opts.target_policy!r}: one of {', '.join(TARGET_POLICIES)}")
        key = (opts.manifest, opts.samples, float(opts.silence_prefix))
        corpus = self._corpus if key == self._corpus_key else None
        if corpus is None:
            corpus = build_corpus(select(load_manifest(opts.manifest), opts.samples), opts.silence_prefix)
            self._corpus_key, self._corpus = key, corpus
        if opts.gates and check_gates:
            load_gates(opts.gates)  # a broken gates file fails now, not after the whole load
        cfg = session_config(opts, targets[0], worker=worker_name())  # the key file is read here, once per test
        if opts.api_key:
            cfg = replace(cfg, api_key=opts.api_key)
        return TestPlan(corpus, targets, opts.target_policy, cfg, conversation_spec(opts))


def parse_targets(host: str | None) -> list[str]:
    """--host as a list of ws:// URLs (comma-separated for a fleet; empty: $YAP_ADDR:$YAP_PORT)."""
    try:
        return server_urls(host)
    except UserError as exc:
        raise UserError(f"--host {host!r}: {exc}") from None
