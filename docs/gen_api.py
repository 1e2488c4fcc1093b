"""Write docs/api.md, the API reference, from the package's docstrings.

    python docs/gen_api.py            # rewrite docs/api.md (what `make docs` runs)
    python docs/gen_api.py --check    # exit 1 when docs/api.md is stale
    python docs/gen_api.py --missing  # list public names without a docstring

Standard library only (``inspect``, ``ast``, ``pkgutil``). Every public module of the package
(a module whose name has no part starting with ``_``) is documented with the names of its
``__all__``, in that order; every name of ``transflow.__all__`` is listed in the first
section with the module that documents it. The names the facade imports lazily report
``transflow`` as their module, so they are documented there, wherever they are implemented;
the private rooms (``_wire``, ``_aws``) are not documented at all. The output depends only
on the source, never on memory addresses, set order or the Python version, so a test can
compare it byte for byte.
"""

from __future__ import annotations

import argparse
import ast
import enum
import importlib
import inspect
import pkgutil
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

PACKAGE = "transflow"
ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "api.md"
COMMAND = "make docs"
WIDTH = 88
MAX_VALUE_CHARS = 300

HEADER = f"""\
# API reference

Generated from the docstrings by `docs/gen_api.py`; do not edit by hand. Run `{COMMAND}`
after changing a public name or its docstring (a test fails while this page is stale).

Import public names from `transflow` itself: the names listed under [transflow](#transflow)
are the stable API. The other names of each module are public too, for the cases the
package-level names do not cover (batch planning, health decisions, the SAM template, …).
"""

_ROLE = re.compile(r":(?:class|func|meth|attr|exc|data|mod|obj|const):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+")


class _Raw(str):
    """Text shown as it is where inspect would show a repr (annotations kept as source)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _is_class(value: Any) -> bool:
    """A class, not a generic alias: Python 3.10 reports ``Callable[[X], None]`` as a class."""
    return (
        inspect.isclass(value)
        and not isinstance(value, types.GenericAlias)
        and typing.get_origin(value) is None
    )


def public_modules() -> list[ModuleType]:
    """The package and each of its public submodules, sorted by dotted name."""
    package = importlib.import_module(PACKAGE)
    names = [PACKAGE]
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{PACKAGE}."):
        parts = info.name.split(".")[1:]
        if not any(part.startswith("_") for part in parts):
            names.append(info.name)
    return [importlib.import_module(name) for name in sorted(names)]


def public_names(module: ModuleType) -> list[str]:
    """``__all__`` when the module declares it, else its own classes and functions."""
    declared = getattr(module, "__all__", None)
    if declared is not None:
        return [str(name) for name in declared]
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (_is_class(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    )


def markdown(doc: str | None) -> str:
    """A docstring, cleaned of its indentation, with reST roles and literals as Markdown."""
    if not doc:
        return ""
    text = inspect.cleandoc(doc)
    text = _ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    text = _LITERAL.sub(lambda m: f"`{m.group(1)}`", text)
    # A paragraph that ends in "::" introduces an indented literal block, as in reST.
    return re.sub(r"(\S)::\n", r"\1:\n", text)


def anchor(module_name: str) -> str:
    """GitHub's anchor of a ``## transflow.x`` heading."""
    return module_name.replace(".", "")


def _default(value: Any) -> str:
    if value is attrs.NOTHING:
        return "<factory>"
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, (set, frozenset)):
        items = ", ".join(sorted(repr(item) for item in value))
        return f"{type(value).__name__}({{{items}}})" if value else f"{type(value).__name__}()"
    if inspect.isfunction(value) or _is_class(value):
        return str(value.__qualname__)
    return _ADDRESS.sub("", repr(value))


def _annotation(value: Any) -> Any:
    if value is inspect.Parameter.empty or value is inspect.Signature.empty:
        return value
    if isinstance(value, str):
        return _Raw(value)
    return _Raw(inspect.formatannotation(value))


def signature(obj: Callable[..., Any], *, drop_first: bool = False) -> str:
    """``(params) -> return`` with annotations as written in the source."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = list(sig.parameters.values())
    if drop_first and params and params[0].name in {"self", "cls"}:
        params = params[1:]
    cleaned = [
        p.replace(
            annotation=_annotation(p.annotation),
            default=p.default if p.default is p.empty else _Raw(_default(p.default)),
        )
        for p in params
    ]
    sig = sig.replace(parameters=cleaned, return_annotation=_annotation(sig.return_annotation))
    return str(sig)


def wrap_signature(prefix: str, sig: str) -> str:
    """One line when it fits, else one parameter per line."""
    line = f"{prefix}{sig}"
    if len(line) <= WIDTH:
        return line
    params_part, _, returns = sig.rpartition(")")
    params = _split_params(params_part[1:])
    body = "".join(f"    {param},\n" for param in params)
    return f"{prefix}(\n{body}){returns}"


def _split_params(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    quote = ""
    current = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    if current.strip():
        parts.append(current.strip())
    return parts


class _Source:
    """What the source of one module says about its assignments and classes."""

    def __init__(self, module: ModuleType) -> None:
        self.text = inspect.getsource(module)
        self.lines = self.text.splitlines()
        self.tree = ast.parse(self.text)

    def assignment(self, name: str) -> tuple[str, str] | None:
        """``(source of the assignment, its documentation)`` for a module-level name."""
        body = self.tree.body
        for index, node in enumerate(body):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets = [node.target]
            if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
                continue
            code = ast.get_source_segment(self.text, node) or name
            following = body[index + 1] if index + 1 < len(body) else None
            if (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                return code, following.value.value
            return code, self._comment_above(node.lineno)
        return None

    def _comment_above(self, lineno: int) -> str:
        comments: list[str] = []
        index = lineno - 2
        while index >= 0 and self.lines[index].startswith("#"):
            comments.insert(0, self.lines[index].lstrip("#").strip())
            index -= 1
        return " ".join(comments)

    def class_fields(self, name: str) -> list[str]:
        """The ``name: annotation`` lines of a class body (TypedDicts, Protocols)."""
        for node in self.tree.body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return [
                    ast.get_source_segment(self.text, item) or ""
                    for item in node.body
                    if isinstance(item, ast.AnnAssign)
                ]
        return []


def _members(cls: type) -> Iterator[tuple[str, str, str]]:
    """``(kind, rendered signature, docstring)`` of a class's own public members."""
    for name, value in vars(cls).items():
        if name.startswith("_") and name != "__call__":
            continue
        if isinstance(value, (staticmethod, classmethod)):
            kind = "staticmethod" if isinstance(value, staticmethod) else "classmethod"
            function = value.__func__
            sig = signature(function, drop_first=kind == "classmethod")
            yield kind, wrap_signature(f"{cls.__name__}.{name}", sig), function.__doc__ or ""
        elif inspect.isfunction(value):
            sig = signature(value, drop_first=True)
            yield "method", wrap_signature(f"{cls.__name__}.{name}", sig), value.__doc__ or ""
        elif isinstance(value, property) and value.fget is not None:
            returns = signature(value.fget).rpartition(" -> ")[2]
            line = f"{cls.__name__}.{name}: {returns}" if returns != "(...)" else name
            yield "property", line, value.fget.__doc__ or ""


def _class_block(cls: type, source: _Source) -> str:
    """The code block of a class: how to build it, or what it holds."""
    if typing.is_typeddict(cls) or getattr(cls, "_is_protocol", False):
        kind = "TypedDict" if typing.is_typeddict(cls) else "Protocol"
        fields = [f"    {field}" for field in source.class_fields(cls.__name__)]
        return "\n".join([f"class {cls.__name__}({kind}):", *(fields or ["    ..."])])
    if issubclass(cls, enum.Enum):
        members = [f"    {member.name} = {member.value!r}" for member in cls]
        return "\n".join([f"class {cls.__name__}({_bases(cls)}):", *members])
    if issubclass(cls, BaseException) and "__init__" not in vars(cls):
        return f"class {cls.__name__}({_bases(cls)})"
    sig = signature(cls)
    sig = sig.removesuffix(" -> None")
    return wrap_signature(f"class {cls.__name__}", sig)


def _bases(cls: type) -> str:
    return ", ".join(b.__name__ for b in cls.__bases__ if b not in (object, typing.Generic))


def _doc_lines(doc: str) -> list[str]:
    text = markdown(doc)
    return [text, ""] if text else ["*No docstring.*", ""]


def render_module(module: ModuleType, defined: dict[str, str], missing: list[str]) -> list[str]:
    """The section of one module."""
    name = module.__name__
    out = [f"## {name}", ""]
    doc = markdown(module.__doc__)
    out += [doc, ""] if doc else []
    return out + render_names(module, public_names(module), defined, missing)


def render_names(
    module: ModuleType, names: list[str], defined: dict[str, str], missing: list[str]
) -> list[str]:
    """The entries of ``names``, public names of ``module``."""
    name = module.__name__
    out: list[str] = []
    homes: dict[str, str] = getattr(module, "_HOMES", {})
    sources: dict[str, _Source] = {}

    def source_of(public: str) -> _Source:
        # A facade name's fields and values are read where it is written.
        home = homes.get(public, name)
        if home not in sources:
            sources[home] = _Source(importlib.import_module(home))
        return sources[home]

    for public in names:
        value = getattr(module, public)
        home = defined.get(f"{name}.{public}")
        if home is not None and home != name:
            out += [f"- `{public}`: see [{home}](#{anchor(home)}).", ""]
            continue
        source = source_of(public)
        qualified = f"{name}.{public}"
        if _is_class(value):
            block = _class_block(value, source)
            out += [f"### {public}", "", "```python", block, "```", ""]
            bases = _bases(value)
            if bases and not block.startswith(f"class {public}({bases})"):
                out += [f"Bases: {', '.join(f'`{b}`' for b in bases.split(', '))}", ""]
            if not value.__doc__:
                missing.append(qualified)
            out += _doc_lines(value.__doc__ or "")
            for kind, line, member_doc in _members(value):
                label = "" if kind == "method" else f" ({kind})"
                title = line.split("(")[0].split(":")[0]
                out += [f"#### {title}{label}", "", "```python", line, "```", ""]
                if not member_doc:
                    missing.append(f"{name}.{title}")
                out += _doc_lines(member_doc)
        elif inspect.isfunction(value):
            out += [f"### {public}", "", "```python"]
            out += [wrap_signature(f"def {public}", signature(value)), "```", ""]
            if not value.__doc__:
                missing.append(qualified)
            out += _doc_lines(value.__doc__ or "")
        else:
            found = source.assignment(public)
            code, data_doc = found if found else (f"{public} = {_default(value)}", "")
            if len(code) > MAX_VALUE_CHARS:
                code = code[:MAX_VALUE_CHARS].rstrip() + " …"
            out += [f"### {public}", "", "```python", code, "```", ""]
            if not data_doc:
                missing.append(qualified)
            out += _doc_lines(data_doc)
    return out


def _home(module: ModuleType, name: str, value: Any) -> str:
    """The module that documents a public name: where it is defined."""
    if _is_class(value) or inspect.isfunction(value):
        return str(value.__module__)
    return module.__name__


def render(missing: list[str] | None = None) -> str:
    """The whole of docs/api.md."""
    missing = [] if missing is None else missing
    modules = public_modules()
    package = importlib.import_module(PACKAGE)
    for name in public_names(package):
        getattr(package, name)  # resolved, a facade name reports ``transflow`` as its module
    by_name = {m.__name__: m for m in modules}
    defined: dict[str, str] = {}
    for module in modules:
        for public in public_names(module):
            home = _home(module, public, getattr(module, public))
            # A name defined in a private module (transflow._version) is documented where it
            # is exported from.
            defined[f"{module.__name__}.{public}"] = home if home in by_name else module.__name__

    out = [HEADER, "## Contents", ""]
    for module in modules:
        summary = markdown(module.__doc__).split("\n\n")[0].replace("\n", " ")
        out.append(f"- [{module.__name__}](#{anchor(module.__name__)}): {summary}")
    out += ["", f"## {PACKAGE}", "", markdown(package.__doc__), ""]
    out += ["| name | documented in | summary |", "| --- | --- | --- |"]
    for public in public_names(package):
        value = getattr(package, public)
        home = defined[f"{PACKAGE}.{public}"]
        doc = value.__doc__ if _is_class(value) or inspect.isfunction(value) else ""
        summary = markdown(doc).split("\n\n")[0].replace("\n", " ").replace("|", "\\|")
        if home == PACKAGE:
            summary = summary or f"`{value!r}`"
        out.append(f"| `{public}` | [{home}](#{anchor(home)}) | {summary} |")
    out.append("")
    facade = [name for name in public_names(package) if name in package._HOMES]
    out += render_names(package, facade, defined, missing)
    for module in modules:
        if module.__name__ != PACKAGE:
            out += render_module(module, defined, missing)
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/api.md is stale")
    parser.add_argument("--missing", action="store_true", help="list names without docstrings")
    args = parser.parse_args(argv)
    missing: list[str] = []
    text = render(missing)
    if args.missing:
        print("\n".join(missing))
        return 0
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
