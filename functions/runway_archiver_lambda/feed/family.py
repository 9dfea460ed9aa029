"""A model family behind the gateway: how to ask about one task, how to read the answer, how its media are fetched.

Each family is one module in `feed/families/` that defines one subclass of `Family` and names an
instance of it `FAMILY`. The registry finds them by discovery (every module of that package), so a
new family is one module, one sample folder (`events/feed/<family>/`) and one row in
docs/contract.md, and nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from .model import (
    ENVELOPE_MARKERS,
    ENVELOPE_STATUSES,
    FeedAnswer,
    FeedError,
    FeedErrorKind,
    NativeDialect,
    Progress,
    Provider,
    Reading,
    build_answer,
    raise_for_error_envelope,
    read_envelope,
    status_word,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

DEFAULT_FAMILY = "runway"  # an item without `model_family` is Runway's (every item made before families existed)


@dataclass(frozen=True)
class Query:
    """One request for a task's state: method and path under the API's base URL, and a JSON body."""

    method: str
    path: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class Family:
    """What one family's module says. Subclasses set the class attributes and `query`/`read_native`."""

    name: ClassVar[str]
    title: ClassVar[str]  # as people call it, for `runway-archiver` and the docs
    dialect: ClassVar[NativeDialect]
    status_words: ClassVar[Mapping[str, Progress]]  # as `status_word` spells them
    # True: the media are served by the API itself and need the key (Sora's content endpoint).
    media_through_api: ClassVar[bool] = False
    # The top-level `code` of an answer that is not an error (the gateway's envelope: 200 or "success").
    success_codes: ClassVar[frozenset[str]] = frozenset({"200", "success"})
    version_header: ClassVar[str | None] = None  # a header that carries the stack's API version (Runway's)

    def serves(self, api: Provider) -> bool:
        """Whether a stack asking `api` can ask about this family's tasks (only the gateway serves them all)."""
        return api is Provider.COMETAPI

    def query(self, task_id: str, api: Provider) -> Query:
        raise NotImplementedError

    def is_native(self, obj: Mapping[str, Any]) -> bool:
        """Whether `obj` is this family's own task object (rather than the gateway's envelope)."""
        raise NotImplementedError

    def read_native(self, obj: Mapping[str, Any], base_url: str) -> Reading:
        """This family's own task object read on its own (`base_url`: the API the media may come from)."""
        raise NotImplementedError

    def not_found(self, http_status: int, api: Provider) -> bool:
        """An HTTP status that means "no such task" (yet, or any more) for this family."""
        return False

    def resolve_media(self, answer: FeedAnswer, ask: Callable[[str], Mapping[str, Any]]) -> FeedAnswer:
        """A finished answer whose media need another API call to be found (MiniMax's file id):
        `ask(url)` GETs a JSON object from the API's own host, with the key. Most families need none."""
        return answer

    def task_object(self, task_id: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """The task object inside an answer: an envelope's `data`, or the answer itself (a bare task).

        An error envelope (a `code` other than this family's success codes) raises, with the message.
        """
        raise_for_error_envelope(body, 200, self.success_codes)
        if "code" in body or ("data" in body and not self.is_native(body)):
            data = body.get("data")
            if not isinstance(data, dict):
                raise FeedError(FeedErrorKind.MALFORMED, "feed answer has no `data` object", http_status=200)
        elif self.is_native(body) or "status" in body:
            data = dict(body)
        else:
            raise FeedError(FeedErrorKind.MALFORMED, "feed answer is neither an envelope nor a task", http_status=200)
        answered_for = data.get("task_id", data.get("id"))
        if answered_for not in (None, "", task_id):
            raise FeedError(
                FeedErrorKind.MALFORMED, f"feed answered for another task {str(answered_for)[:80]!r}", http_status=200
            )
        return data

    def is_envelope(self, obj: Mapping[str, Any]) -> bool:
        """The gateway's task envelope around this family's task: its own fields, or its words on a foreign object."""
        if ENVELOPE_MARKERS & obj.keys():
            return True
        return status_word(obj.get("status")) in ENVELOPE_STATUSES and not self.is_native(obj)

    def classify(
        self, task_id: str, data: Mapping[str, Any], provider: Provider = Provider.COMETAPI, base_url: str = ""
    ) -> FeedAnswer:
        """Read one task object (a bare task, or the envelope with this family's task nested) by the shared rules."""
        nested: Mapping[str, Any] | None = None
        if self.is_envelope(data):
            outer = read_envelope(data)
            candidate = data.get("data")
            nested = candidate if isinstance(candidate, dict) and candidate else None
            inner = self.read_native(nested, base_url) if nested is not None else None
        else:
            outer, inner = self.read_native(data, base_url), None
        return build_answer(
            task_id,
            data,
            outer,
            inner,
            provider=provider,
            family=self.name,
            media_through_api=self.media_through_api,
            nested=nested,
        )

    def read_answer(
        self, task_id: str, body: Mapping[str, Any], provider: Provider = Provider.COMETAPI, base_url: str = ""
    ) -> FeedAnswer:
        """A whole answer body read into a `FeedAnswer`."""
        return self.classify(task_id, self.task_object(task_id, body), provider, base_url)


@cache
def families() -> dict[str, Family]:
    """Every family module in `feed/families/`, by name (discovery: no list to keep)."""
    package = importlib.import_module(f"{__package__}.families")  # the subpackage, not this function
    found: dict[str, Family] = {}
    for module_info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        family = getattr(module, "FAMILY", None)
        if isinstance(family, Family):
            found[family.name] = family
    return dict(sorted(found.items()))


def family_named(name: str | None) -> Family | None:
    """The family of that name (None or "" is the default, Runway); None when no module serves it."""
    return families().get((name or DEFAULT_FAMILY).strip().lower())


def known_families() -> str:
    """The names a registration may use, for one line of help."""
    return ", ".join(families())
