"""The public names are a contract: ``__all__`` and what the package exposes must not drift."""

from __future__ import annotations

import importlib
import types

import pytest

import cvekyc_async

PRIVATE_MODULES = [
    "_batch",
    "_body",
    "_client",
    "_constants",
    "_errors",
    "_inputs",
    "_models",
    "_pacing",
    "_read",
    "_redact",
    "_retry",
    "_transport",
    "_usage",
    "testing",
    "checks",
    "cli",
    "cli.batch",
    "cli.demo",
    "cli.export",
    "cli.extract",
    "cli.joblog",
    "cli.jobs",
    "cli.main",
    "cli.merge",
    "cli.options",
    "cli.progress",
    "cli.records",
    "cli.summary",
    "emulator",
    "emulator._app",
    "emulator._fake",
    "emulator._images",
    "emulator._server",
    "emulator._specimens",
    "emulator._state",
    "emulator._truth",
]


def test_all_names_every_public_object_once() -> None:
    exported = set(cvekyc_async.__all__)
    public = {
        name
        for name, obj in vars(cvekyc_async).items()
        if not name.startswith("_") and not isinstance(obj, types.ModuleType)
    }
    assert exported == (public - {"annotations"}) | {"__version__"}
    # Order is kept by ruff (RUF022); here, no name twice.
    assert len(cvekyc_async.__all__) == len(exported)


@pytest.mark.parametrize("module_name", PRIVATE_MODULES)
def test_each_private_module_declares_all(module_name: str) -> None:
    module = importlib.import_module(f"cvekyc_async.{module_name}")
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name}"


def test_exported_objects_say_they_come_from_the_package() -> None:
    for name in cvekyc_async.__all__:
        obj = getattr(cvekyc_async, name)
        # An alias such as ``Box`` (a ``list[...]``) is no class of ours, but before 3.11
        # ``isinstance(list[int], type)`` is true: it is told apart by its own type.
        if isinstance(obj, type) and not isinstance(obj, types.GenericAlias):
            assert obj.__module__.startswith("cvekyc_async"), name
            assert obj.__doc__, f"{name} has no docstring"


def test_version_is_a_string() -> None:
    assert isinstance(cvekyc_async.__version__, str)


def test_the_library_never_imports_the_command_line_application() -> None:
    import subprocess
    import sys

    code = (
        "import sys, cvekyc_async, cvekyc_async.checks, cvekyc_async.testing;"
        "import cvekyc_async.emulator;"
        "print(sorted(m for m in sys.modules if m.startswith('cvekyc_async.cli')))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert shown.strip() == "[]"
