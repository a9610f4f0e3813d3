"""Opt-in optimistic locking for models with a version column (mapper arg version_id_col).

Mix it in before ServiceBase: class HeroService(Versioned[Hero, HeroCreate, HeroUpdate]): ...
update(expected_version=) refuses to overwrite a version the client never saw; over HTTP the
version travels as an ETag and comes back in If-Match (etag, if_match_versions).
"""

import re
from collections.abc import Collection, Sequence
from typing import Any

from .errors import InvalidPrecondition, PreconditionRequired, StaleVersion
from .service import CreateT, ModelT, ServiceBase, UpdateT


class Versioned(ServiceBase[ModelT, CreateT, UpdateT]):
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "model" in cls.__dict__ and cls._version is None:
            raise TypeError(f"{cls.model.__name__} has no version_id_col in __mapper_args__")

    # --8<-- [start:update]
    async def update(
        self,
        id: Any,
        data: UpdateT,
        *,
        expected_version: int | Collection[int] | None = None,
        load: Sequence[str] = (),
    ) -> ModelT:
        """expected_version: the version the client read, or several (an If-Match list); None: any.

        A write between this read and the UPDATE is caught too: the UPDATE checks the version.
        """
        obj = await self.get(id)
        if expected_version is not None:
            accepted = {expected_version} if isinstance(expected_version, int) else expected_version
            if getattr(obj, self._version.key) not in accepted:
                raise StaleVersion(f"{self._name} {id} is at a newer version; reload it")
        return await self._apply(obj, data, load)

    # --8<-- [end:update]


# --8<-- [start:if_match]
ENTITY_TAG = r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"'  # RFC 9110 8.8.3; headers arrive as latin-1
# #entity-tag: comma-separated, empty elements allowed. Possessive (*+, ?+): linear on any input.
IF_MATCH_LIST = re.compile(
    rf"[ \t]*+(?:{ENTITY_TAG})?+(?:[ \t]*+,[ \t]*+(?:{ENTITY_TAG})?+)*+[ \t]*+"
)


def etag(version: int) -> str:
    return f'"{version}"'


def if_match_versions(
    if_match: str | list[str] | None, *, required: bool = True
) -> frozenset[int] | None:
    """The versions an If-Match header accepts (RFC 9110 13.1.1); None: any (`*`, or optional).

    A list matches if any of its tags does. Comparison is strong: a weak tag (W/"3") never
    matches, nor does a tag this API didn't make; both end in 412 once the row is found.
    Declare the header list[str]: several If-Match lines are one list (RFC 9110 5.3), and a str
    parameter gets only the first (`*` on one line, a stale tag on the next, must be a 400).
    """
    if isinstance(if_match, list):
        if_match = ", ".join(if_match) if if_match else None
    if if_match is None:
        if required:  # without it, a client overwrites edits it never saw (lost update)
            raise PreconditionRequired('send If-Match: the ETag from GET, e.g. "3"; * for any')
        return None
    if if_match.strip(" \t") == "*":
        return None
    if not IF_MATCH_LIST.fullmatch(if_match):
        raise InvalidPrecondition('If-Match must be * or a list of ETags, e.g. "3", "4"')
    return frozenset(
        int(tag[2])
        for tag in re.finditer(ENTITY_TAG, if_match)
        if not tag[1] and re.fullmatch(r"0|[1-9][0-9]{0,17}", tag[2])  # "01" is not "1"
    )


# --8<-- [end:if_match]
