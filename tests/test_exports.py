"""The public surface: everything in `kvcache.__all__` exists, in order (httpx's idea)."""

from __future__ import annotations

import kvcache

# Every public name of the package root. A name added to or dropped from the
# package must be added or dropped here too: the surface changes on purpose only.
PUBLIC_NAMES = [
    "JSON",
    "AlreadyInProgress",
    "Cache",
    "CacheStats",
    "CacheTTLWarning",
    "CircuitBreaker",
    "Claim",
    "ClaimLost",
    "CustomerCreationError",
    "FamilyStats",
    "GraphQLError",
    "Idempotency",
    "IdempotencyError",
    "KVBackendError",
    "KVConfigError",
    "KVEntry",
    "KVError",
    "KVStore",
    "KVValidationError",
    "KeyInfo",
    "Limits",
    "ListPage",
    "Meter",
    "OpenKV",
    "Outcome",
    "Serializer",
    "ShopNotFound",
    "ShopifyAuthError",
    "ShopifyError",
    "ShopifyHTTPError",
    "ShopifyUnavailable",
    "__version__",
    "open_kv",
]


def test_every_exported_name_exists() -> None:
    for name in kvcache.__all__:
        assert hasattr(kvcache, name), name


def test_all_is_sorted_and_unique() -> None:
    assert kvcache.__all__ == sorted(kvcache.__all__)
    assert len(set(kvcache.__all__)) == len(kvcache.__all__)


def test_the_public_names_are_exactly_these() -> None:
    assert sorted(kvcache.__all__) == sorted(PUBLIC_NAMES)


def test_public_objects_report_kvcache_as_their_module() -> None:
    # As httpx does: reprs, tracebacks and docs show the path users import from.
    for name in kvcache.__all__:
        value = getattr(kvcache, name)
        if isinstance(value, type) or callable(value):
            assert value.__module__ == "kvcache", name


def test_paths_that_existed_before_the_layout_keep_working() -> None:
    import kvcache.cache
    import kvcache.decorators
    import kvcache.errors
    import kvcache.idempotency
    import kvcache.serializers
    import kvcache.stats

    assert kvcache.cache.Cache is kvcache.Cache
    assert kvcache.stats.register_prometheus is kvcache.cache.stats.register_prometheus
    assert kvcache.serializers.JSON is kvcache.JSON
    assert kvcache.decorators.cached is kvcache.cache.decorators.cached
    assert kvcache.errors.KVBackendError is kvcache.kv.errors.KVBackendError
    assert kvcache.idempotency.Idempotency is kvcache.Idempotency


def test_public_classes_and_functions_are_exported() -> None:
    public = {
        name
        for name, value in vars(kvcache).items()
        if not name.startswith("_")
        and (isinstance(value, type) or callable(value))
        and getattr(value, "__module__", "").startswith("kvcache")
    }
    assert public <= set(kvcache.__all__), sorted(public - set(kvcache.__all__))


def test_error_tree() -> None:
    assert issubclass(kvcache.KVValidationError, kvcache.KVError)
    assert issubclass(kvcache.KVValidationError, ValueError)
    assert issubclass(kvcache.KVBackendError, kvcache.KVError)
    assert not issubclass(kvcache.KVBackendError, ValueError)
    assert issubclass(kvcache.KVConfigError, kvcache.KVError)
    assert issubclass(kvcache.ShopifyError, kvcache.KVError)
    for name in ("ShopifyHTTPError", "ShopifyUnavailable", "GraphQLError", "ShopNotFound"):
        assert issubclass(getattr(kvcache, name), kvcache.ShopifyError), name
    assert issubclass(kvcache.CustomerCreationError, kvcache.ShopifyError)
    assert issubclass(kvcache.ShopifyAuthError, kvcache.ShopifyHTTPError)


def test_version() -> None:
    assert isinstance(kvcache.__version__, str) and kvcache.__version__
