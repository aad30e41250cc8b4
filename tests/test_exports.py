"""The public surface: everything in `kvcache.__all__` exists, in order (httpx's idea)."""

from __future__ import annotations

import kvcache

# The names DESIGN.md promises (those that exist at this stage).
DESIGN_NAMES = [
    "KVBackendError",
    "KVEntry",
    "KVError",
    "KVStore",
    "KVValidationError",
    "KeyInfo",
    "Limits",
    "ListPage",
    "open_kv",
]


def test_every_exported_name_exists() -> None:
    for name in kvcache.__all__:
        assert hasattr(kvcache, name), name


def test_all_is_sorted_and_unique() -> None:
    assert kvcache.__all__ == sorted(kvcache.__all__)
    assert len(set(kvcache.__all__)) == len(kvcache.__all__)


def test_design_names_are_exported() -> None:
    missing = [name for name in DESIGN_NAMES if name not in kvcache.__all__]
    assert not missing


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


def test_version() -> None:
    assert isinstance(kvcache.__version__, str) and kvcache.__version__
