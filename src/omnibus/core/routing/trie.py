"""The one subject / routing-key matcher: a token trie with dedicated wildcard children.

Modelled on nats-server ``server/sublist.go``. A pattern is split on ``.`` into tokens; each trie node
has a dict of literal children plus two dedicated children, one for the single-token wildcard ``*``
and one for the full wildcard (``>`` in NATS, ``#`` in AMQP). A subject is matched by walking the
literal child and, in parallel, the ``*`` child and the full-wildcard child at every level, so a match
costs O(tokens x wildcard branching), independent of how many patterns are stored. Never a regex.

Two syntaxes on one node structure (``SubjectTrie(style=...)``):

* ``"nats"`` (NATS subjects, https://docs.nats.io/nats-concepts/subjects): ``*`` matches exactly one
  token, ``>`` matches one or more tokens and may only be the last token (``a.>`` does not match
  ``a``). Empty tokens are invalid in patterns (``insert`` raises) and a subject with an empty token
  matches nothing (as nats-server's ``match`` returns ``emptyResult``). ``*``/``>`` are wildcards
  only as whole tokens: ``a*`` is a literal token (nats-server ``subjectIsLiteral``).
* ``"amqp"`` (RabbitMQ topic exchange, ``rabbit_db_topic_exchange.erl``): ``*`` matches exactly one
  word, ``#`` matches zero or more words and may appear anywhere (``a.#.b`` matches ``a.b``). Words
  may be empty (``a..b`` has three words) and the empty routing key has zero words, exactly as
  RabbitMQ's ``split_topic_key`` (so ``#`` matches ``""`` but ``*`` does not). Because ``#`` can
  consume any number of words mid-pattern, matching backtracks at ``#`` nodes; states
  ``(#-node, position)`` are memoised so ``#.#.#`` stays polynomial (RabbitMQ itself revisits them).

Values and queue groups: values are opaque hashables (a NATS subscription object, an AMQP binding
destination). ``insert(pattern, value, group=None)``: with a ``group`` name the value is a queue-group
member (NATS ``SUB subject queue sid``). ``match`` returns a ``MatchResult(plain, groups)``: ``plain``
is a tuple of distinct non-group values, ``groups`` a tuple of ``(group, members_tuple)`` pairs with
the members of each group gathered across every matching pattern (the caller picks one member per
group, as nats-server does with ``qsubs``). Tuples, not dicts, because results are iterated per
message and cached. A value appears at most once in ``plain`` even when several patterns match, and
inserting the same (pattern, value, group) twice is a no-op (returns False): the trie is a set;
callers that need reference counts (AMQP bindings differing only in arguments) keep them.

Match cache (nats-server ``slCacheMax``): ``match`` results are cached per subject in a dict bounded
to ``cache_size`` entries; when full, the oldest-inserted half is dropped (nats-server drops random
entries down to ``slCacheSweep``; insertion order is what a Python dict gives for free, and no
reordering on a hit keeps hits at one dict lookup). Results are immutable tuples that are never
modified after creation, so a result a caller holds stays a consistent snapshot while subscriptions
change (the copy-on-write property nats-server gets by copying ``SublistResult``). On
insert/remove we invalidate rather than patch: a literal pattern can only affect the cache entry with
the same string, so that one entry is popped (O(1)); a wildcard pattern clears the whole cache.
nats-server instead scans every cached subject and patches the matching ones, which is cheap in Go but
in Python costs ~0.7 us per entry (~0.7 ms per wildcard SUB with a full cache, paid in the subscribe
path, even when no cached subject is affected); clearing costs nothing now and one trie walk (~4 us
with 10k patterns) per hot subject re-matched afterwards, spread over the publishes that need it.
Run ``python bench/matcher.py`` before changing this trade-off or the walk loops below.

Concurrency: no locks; event-loop thread only (the broker is one event loop).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from itertools import islice
from typing import Literal

__all__ = [
    "CACHE_MAX",
    "CACHE_SWEEP_FRACTION",
    "EMPTY_MATCH",
    "MatchResult",
    "SubjectTrie",
    "is_literal",
    "valid_nats_pattern",
    "valid_nats_subject",
]

# Bound on cached match results (distinct subjects). nats-server: slCacheMax = 1024.
CACHE_MAX = 1024
# When the cache is full, keep this fraction of it (the newest entries). nats-server sweeps down to
# slCacheSweep = 512, i.e. half of slCacheMax.
CACHE_SWEEP_FRACTION = 0.5

PWC = "*"  # single-token wildcard, both syntaxes
NATS_FWC = ">"  # NATS full wildcard: one or more trailing tokens
AMQP_FWC = "#"  # AMQP full wildcard: zero or more words, anywhere
SEP = "."

# Characters nats-server refuses inside a subject (IsValidSubject: ' ', '\t', '\n', '\r', '\f').
_NATS_WHITESPACE = (" ", "\t", "\n", "\r", "\f")

Style = Literal["nats", "amqp"]


class MatchResult:
    """What a subject matched: distinct plain values, and queue groups with their members.

    ``plain`` is a tuple of values; ``groups`` a tuple of ``(group, members_tuple)`` pairs. Immutable
    by convention and possibly shared through the cache: never mutate, iterate. Unpacks as
    ``plain, groups = result``. (A slotted class, not a NamedTuple: construction is ~2x cheaper,
    and it is built on every cache miss.)
    """

    __slots__ = ("plain", "groups", "_set")

    def __init__(self, plain: tuple, groups: tuple = ()) -> None:
        self.plain = plain
        self.groups = groups
        self._set: frozenset | None = None

    def plain_set(self) -> frozenset:
        """``plain`` as a frozenset, computed once per result (so once per cached subject)."""
        s = self._set
        if s is None:
            s = self._set = frozenset(self.plain)
        return s

    def __bool__(self) -> bool:
        return bool(self.plain or self.groups)

    def __iter__(self) -> Iterator:
        yield self.plain
        yield self.groups

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MatchResult):
            return NotImplemented
        return self.plain == other.plain and self.groups == other.groups

    __hash__ = None  # type: ignore[assignment]

    def values(self) -> tuple:
        """Every matched value, plain first then group members (for callers with no groups)."""
        if not self.groups:
            return self.plain
        out = list(self.plain)
        for _, members in self.groups:
            out.extend(members)
        return tuple(out)

    def __repr__(self) -> str:
        return f"MatchResult(plain={self.plain!r}, groups={self.groups!r})"


EMPTY_MATCH = MatchResult((), ())


class _Node:
    """One trie node: values stored at this pattern, and the children one token further."""

    __slots__ = ("literal", "star", "full", "plain", "groups")

    def __init__(self) -> None:
        self.literal: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.full: _Node | None = None
        self.plain: dict = {}  # value -> None: an insertion-ordered set
        self.groups: dict[str, dict] | None = None  # group -> {value: None}

    def has_children(self) -> bool:
        return bool(self.literal) or self.star is not None or self.full is not None

    def is_empty(self) -> bool:
        return not self.plain and not self.groups and not self.has_children()


def is_literal(pattern: str, style: Style = "nats") -> bool:
    """True if no token of ``pattern`` is a wildcard (``*``, and ``>``/``#`` for the style)."""
    full = NATS_FWC if style == "nats" else AMQP_FWC
    if PWC not in pattern and full not in pattern:  # fast path: no wildcard character at all
        return True
    for tok in pattern.split(SEP):
        if tok == PWC or tok == full:
            return False
    return True


def valid_nats_pattern(subject: str) -> bool:
    """A valid NATS subscription subject: wildcards allowed (nats-server ``IsValidSubject``).

    Non-empty, no empty token, ``>`` only as the last token, no whitespace. ``*``/``>`` inside a
    longer token (``a*``) are literal characters, not wildcards, as in nats-server.
    """
    if not subject:
        return False
    for ch in _NATS_WHITESPACE:
        if ch in subject:
            return False
    tokens = subject.split(SEP)
    last = len(tokens) - 1
    for i, tok in enumerate(tokens):
        if not tok:
            return False
        if tok == NATS_FWC and i != last:
            return False
    return True


def valid_nats_subject(subject: str) -> bool:
    """A valid NATS publish subject: a valid pattern with no wildcard token
    (nats-server ``IsValidPublishSubject``)."""
    return valid_nats_pattern(subject) and is_literal(subject, "nats")


def _collect_nats(root: _Node, subject: str) -> list[_Node] | None:
    # nats-server matchLevel, made iterative (no recursion limit on deep subjects): walk the literal
    # path, remembering '*' branches on a stack allocated only when one exists. Run
    # bench/matcher.py before changing.
    toks = subject.split(SEP)
    if "" in toks:  # empty subject or empty token: matches nothing (nats-server emptyResult)
        return None
    n = len(toks)
    found: list[_Node] = []
    stack: list[tuple[_Node, int]] | None = None
    node: _Node | None = root
    i = 0
    while True:
        while True:
            if i == n:
                found.append(node)  # type: ignore[arg-type]
                break
            full = node.full  # type: ignore[union-attr]
            if full is not None:  # '>' swallows the one-or-more tokens left
                found.append(full)
            star = node.star  # type: ignore[union-attr]
            if star is not None:
                if stack is None:
                    stack = [(star, i + 1)]
                else:
                    stack.append((star, i + 1))
            node = node.literal.get(toks[i])  # type: ignore[union-attr]
            if node is None:
                break
            i += 1
        if not stack:
            return found
        node, i = stack.pop()


def _collect_amqp(root: _Node, subject: str) -> list[_Node]:
    # RabbitMQ trie_match / trie_match_skip_any, iterative, with '#' states memoised.
    # Run bench/matcher.py before changing.
    words = subject.split(SEP) if subject else []  # "" has zero words (split_topic_key)
    n = len(words)
    found: list[_Node] = []
    stack: list[tuple[_Node, int]] = []
    seen: set | None = None
    node: _Node | None = root
    i = 0
    while True:
        while True:
            full = node.full  # type: ignore[union-attr]
            if full is not None:
                if not full.literal and full.star is None and full.full is None:
                    found.append(full)  # trailing '#': matches whatever is left, even nothing
                else:
                    if seen is None:
                        seen = set()
                    for j in range(i, n + 1):  # '#' consumes words[i:j]
                        state = (full, j)
                        if state not in seen:
                            seen.add(state)
                            stack.append(state)
            if i == n:
                found.append(node)  # type: ignore[arg-type]
                break
            star = node.star  # type: ignore[union-attr]
            if star is not None:
                stack.append((star, i + 1))
            node = node.literal.get(words[i])  # type: ignore[union-attr]
            if node is None:
                break
            i += 1
        if not stack:
            return found
        node, i = stack.pop()


def _result(found: list[_Node] | None) -> MatchResult:
    if not found:
        return EMPTY_MATCH
    if len(found) == 1:  # the common case: one matching pattern node
        node = found[0]
        if not node.groups:
            return MatchResult(tuple(node.plain), ()) if node.plain else EMPTY_MATCH
    plain: dict = {}
    groups: dict[str, dict] | None = None
    for node in found:
        if node.plain:
            plain.update(node.plain)
        if node.groups:
            if groups is None:
                groups = {}
            for name, members in node.groups.items():
                have = groups.get(name)
                if have is None:
                    groups[name] = dict(members)
                else:
                    have.update(members)
    if not plain and not groups:
        return EMPTY_MATCH
    return MatchResult(
        tuple(plain),
        tuple((name, tuple(members)) for name, members in groups.items()) if groups else (),
    )


class SubjectTrie:
    """Patterns -> values, matched against literal subjects. See the module docstring.

    ``cache_size=0`` disables the match cache. Event-loop thread only.
    """

    __slots__ = ("style", "_root", "_full", "_collect", "_cache", "_cache_max", "_cache_keep",
                 "_count", "matches", "cache_hits")

    def __init__(self, style: Style = "nats", *, cache_size: int = CACHE_MAX) -> None:
        if style == "nats":
            self._full = NATS_FWC
            self._collect = _collect_nats
        elif style == "amqp":
            self._full = AMQP_FWC
            self._collect = _collect_amqp
        else:
            raise ValueError(f"unknown trie style {style!r}: expected 'nats' or 'amqp'")
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self.style: Style = style
        self._root = _Node()
        self._cache: dict[str, MatchResult] | None = {} if cache_size else None
        self._cache_max = cache_size
        self._cache_keep = int(cache_size * CACHE_SWEEP_FRACTION)
        self._count = 0
        self.matches = 0  # statistics, as nats-server SublistStats
        self.cache_hits = 0

    # -- reading -------------------------------------------------------------------------------

    def match(self, subject: str) -> MatchResult:
        """Values whose pattern matches the literal ``subject``. Hot path: one dict lookup on a hit."""
        self.matches += 1
        cache = self._cache
        if cache is not None:
            hit = cache.get(subject)
            if hit is not None:
                self.cache_hits += 1
                return hit
        result = _result(self._collect(self._root, subject))
        if cache is not None:
            if len(cache) >= self._cache_max:
                self._sweep(cache)
            cache[subject] = result
        return result

    def has_interest(self, subject: str) -> bool:
        """True if anything matches ``subject``."""
        return bool(self.match(subject))

    def __len__(self) -> int:
        """Number of stored (pattern, value, group) entries."""
        return self._count

    @property
    def cache_count(self) -> int:
        return len(self._cache) if self._cache is not None else 0

    def entries(self) -> Iterator[tuple[str, Hashable, str | None]]:
        """Every stored ``(pattern, value, group)``, depth first (admin/diagnostics, not hot)."""
        stack: list[tuple[_Node, tuple[str, ...]]] = [(self._root, ())]
        while stack:
            node, path = stack.pop()
            if path or self.style == "amqp":  # the NATS root holds nothing (empty pattern invalid)
                pattern = SEP.join(path)
                for value in node.plain:
                    yield pattern, value, None
                if node.groups:
                    for name, members in node.groups.items():
                        for value in members:
                            yield pattern, value, name
            for tok, child in node.literal.items():
                stack.append((child, path + (tok,)))
            if node.star is not None:
                stack.append((node.star, path + (PWC,)))
            if node.full is not None:
                stack.append((node.full, path + (self._full,)))

    # -- writing -------------------------------------------------------------------------------

    def insert(self, pattern: str, value: Hashable, group: str | None = None) -> bool:
        """Add ``value`` under ``pattern`` (as a member of queue ``group`` if given).

        Returns False if that exact entry was already present. Raises ValueError for a pattern
        invalid in the trie's syntax (NATS: empty token, or ``>`` not last).
        """
        tokens = self._tokens(pattern)
        node = self._root
        full_tok = self._full
        for tok in tokens:
            if tok == PWC:
                child = node.star
                if child is None:
                    child = node.star = _Node()
            elif tok == full_tok:
                child = node.full
                if child is None:
                    child = node.full = _Node()
            else:
                child = node.literal.get(tok)
                if child is None:
                    child = node.literal[tok] = _Node()
            node = child
        if group is None:
            if value in node.plain:
                return False
            node.plain[value] = None
        else:
            if node.groups is None:
                node.groups = {}
            members = node.groups.get(group)
            if members is None:
                members = node.groups[group] = {}
            elif value in members:
                return False
            members[value] = None
        self._count += 1
        self._invalidate(pattern, tokens)
        return True

    def remove(self, pattern: str, value: Hashable, group: str | None = None) -> bool:
        """Remove one entry; returns False if it was not there. Prunes emptied nodes."""
        try:
            tokens = self._tokens(pattern)
        except ValueError:
            return False
        node = self._root
        full_tok = self._full
        path: list[tuple[_Node, str, _Node]] = []  # (parent, token, child) for pruning
        for tok in tokens:
            if tok == PWC:
                child = node.star
            elif tok == full_tok:
                child = node.full
            else:
                child = node.literal.get(tok)
            if child is None:
                return False
            path.append((node, tok, child))
            node = child
        if group is None:
            if value not in node.plain:
                return False
            del node.plain[value]
        else:
            members = node.groups.get(group) if node.groups else None
            if members is None or value not in members:
                return False
            del members[value]
            if not members:
                del node.groups[group]  # type: ignore[union-attr]
                if not node.groups:
                    node.groups = None
        self._count -= 1
        for parent, tok, child in reversed(path):
            if not child.is_empty():
                break
            if tok == PWC:
                parent.star = None
            elif tok == full_tok:
                parent.full = None
            else:
                del parent.literal[tok]
        self._invalidate(pattern, tokens)
        return True

    def clear_cache(self) -> None:
        if self._cache is not None:
            self._cache.clear()

    # -- internals -----------------------------------------------------------------------------

    def _tokens(self, pattern: str) -> list[str]:
        if self.style == "amqp":
            return pattern.split(SEP) if pattern else []
        tokens = pattern.split(SEP)
        last = len(tokens) - 1
        for i, tok in enumerate(tokens):
            if not tok:
                raise ValueError(f"invalid NATS subject {pattern!r}: empty token")
            if tok == NATS_FWC and i != last:
                raise ValueError(f"invalid NATS subject {pattern!r}: '>' must be the last token")
        return tokens

    def _invalidate(self, pattern: str, tokens: list[str]) -> None:
        cache = self._cache
        if not cache:
            return
        full_tok = self._full
        for tok in tokens:
            if tok == PWC or tok == full_tok:
                cache.clear()  # a wildcard may touch any cached subject: see module docstring
                return
        cache.pop(pattern, None)  # a literal pattern matches exactly the equal subject

    def _sweep(self, cache: dict[str, MatchResult]) -> None:
        drop = len(cache) - self._cache_keep
        for key in list(islice(cache, drop)):  # oldest-inserted first
            del cache[key]

    def __repr__(self) -> str:
        return f"SubjectTrie(style={self.style!r}, entries={self._count}, cached={self.cache_count})"
