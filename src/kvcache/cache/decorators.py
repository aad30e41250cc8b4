"""`Cache.cached`: an async function's result cached under a key made from its arguments.

`@cache.cached("customer:email:{email}", ttl=1800)` formats the template with
the call's arguments by name (defaults included), then runs `get_or_set`, so
the decorated function gets single-flight, negative caching and stale serving
like any other fetch. Template fields are checked against the function's
parameters when decorating, so a typo fails at import, not at the first call.
"""

from __future__ import annotations

import functools
import inspect
import re
import string
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

__all__ = ["CachedFunction", "CachingBackend", "cached", "template_fields"]

P = ParamSpec("P")
R = TypeVar("R")


class CachingBackend(Protocol):
    """What a cached function needs of its cache (`Cache` is one)."""

    async def get_or_set(
        self,
        key: str,
        fetch: Callable[[], Awaitable[R]],
        ttl: float | None = ...,
        negative_ttl: float | None = ...,
        stale_ttl: float | None = ...,
        lock: bool = ...,
    ) -> R: ...

    async def delete(self, key: str) -> None: ...


def template_fields(template: str) -> set[str]:
    """The argument names a key template uses: `"a:{x}:{y.id}"` -> {"x", "y"}."""
    if not isinstance(template, str):
        raise TypeError(f"key template must be str, not {type(template).__name__}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"key template {template!r} is not a format string: {exc}") from None
    names: set[str] = set()
    for _, field, _, _ in parsed:
        if field is None:
            continue
        name = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not name or name.isdigit():
            raise ValueError(
                f"key template {template!r} uses a positional field; name the argument instead"
            )
        names.add(name)
    return names


class CachedFunction(Generic[P, R]):
    """The decorated function; also `.key(...)` and `await .invalidate(...)`."""

    # Copied from the function by functools.update_wrapper.
    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, Awaitable[R]]

    def __init__(
        self,
        cache: CachingBackend,
        fn: Callable[P, Awaitable[R]],
        template: str,
        options: dict[str, Any],
    ) -> None:
        if not callable(fn):
            raise TypeError(f"cached() decorates a function, not {type(fn).__name__}")
        self._cache = cache
        self._fn = fn
        self.template = template
        self._options = options
        self._signature = inspect.signature(fn)
        params = self._signature.parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = template_fields(template) - set(params)
        if unknown and not takes_any:
            raise ValueError(
                f"key template {template!r} names {sorted(unknown)}, which "
                f"{getattr(fn, '__qualname__', fn)!r} does not take"
            )
        functools.update_wrapper(self, fn)

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key of a call with these arguments (without the cache's prefix)."""
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        for param in self._signature.parameters.values():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(arguments.pop(param.name, {}))
        try:
            return self.template.format_map(arguments)
        except (LookupError, AttributeError, TypeError, ValueError) as exc:
            raise TypeError(
                f"cannot make a key from template {self.template!r} and these arguments: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self.key(*args, **kwargs)
        return await self._cache.get_or_set(key, lambda: self._fn(*args, **kwargs), **self._options)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Delete the cached result of a call with these arguments."""
        await self._cache.delete(self.key(*args, **kwargs))

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        """Decorating a method: bind the instance, as a plain function would."""
        if instance is None:
            return self
        return _BoundCached(self, instance)

    def __repr__(self) -> str:
        return f"<cached {self.template!r} of {self._fn!r}>"


class _BoundCached:
    """A `CachedFunction` bound to an instance (`obj.method(...)`)."""

    def __init__(self, func: CachedFunction[Any, Any], instance: object) -> None:
        self._func = func
        self._instance = instance
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return self._func(self._instance, *args, **kwargs)

    def key(self, *args: Any, **kwargs: Any) -> str:
        return self._func.key(self._instance, *args, **kwargs)

    async def invalidate(self, *args: Any, **kwargs: Any) -> None:
        await self._func.invalidate(self._instance, *args, **kwargs)


def cached(
    cache: CachingBackend, template: str, options: dict[str, Any]
) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]:
    """A decorator caching the function's result in `cache` under `template`."""
    template_fields(template)

    def decorate(fn: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]:
        return CachedFunction(cache, fn, template, options)

    return decorate
