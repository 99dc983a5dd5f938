"""One-sentence explanations of jsonargparse's parse errors.

jsonargparse reports a bad config as a nested list of every Union alternative it tried. A user wants to know which
key was wrong and what was expected; :func:`explain_parse_error` extracts that from the message.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
from collections.abc import Iterable
from typing import NoReturn

#: Set to 1 for tracebacks and jsonargparse's full parse report instead of one-sentence errors.
DEBUG_ENV = "HWNAS_DEBUG"

_OPTION = re.compile(r"Option '([^']+)' is not accepted(?:\. Got value: Namespace\(class_path='([^']+)')?")
_CLASS_PATH = re.compile(r"class_path '([^']+)'")
_PARSER_KEY = re.compile(r'Parser key "([^"]+)"')
_GIVEN = re.compile(r"Given value: (.+)")
_EXPECTED_TYPE = re.compile(r"Expected a <class '([^']+)'>\. Got value: (.+)")
_BAD_CLASS = (
    re.compile(r"Expected a dot import path string: (\S+)"),
    re.compile(r"class_path '([^']+)':\s*\n\s*(?:module '[^']+' has no attribute|No module named)"),
    re.compile(r"Import path does not correspond to a subclass of (\w+)"),
)
_UNKNOWN_KEY = re.compile(r"does not accept option '([^']+)'")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (\S+)")
_NO_FILE = re.compile(r'Parser key "config": File does not exist: (.+)')

#: Which base class a top-level config key takes, and the package's classes a user may name there.
_CHOICES = {
    "model": ("LightningModule", "hwnas_pl.modules"),
    "data": ("LightningDataModule", "hwnas_pl.datamodules"),
}


def init_arguments(class_path: str) -> list[str]:
    """Names of the ``__init__`` arguments of the class at ``class_path`` (empty if it cannot be imported)."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
        params = inspect.signature(cls).parameters.values()
    except (ImportError, AttributeError, ValueError, TypeError):
        return []
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def package_classes(key: str) -> list[str]:
    """Short names of the package's classes that the top-level config ``key`` (model, data) accepts."""
    if key not in _CHOICES:
        return []
    base_name, module_name = _CHOICES[key]
    module = importlib.import_module(module_name)
    names = []
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if (
            inspect.isclass(obj)
            and any(b.__name__ == base_name for b in obj.__mro__[1:])
            and not name.startswith("HWNAS")
        ):
            names.append(name)
    return names


def _closest(word: str, options: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the option with the same dotted prefix whose last part is closest to ``word``'s."""
    prefix, _, last = word.rpartition(".")
    by_last = {o.rpartition(".")[2]: o for o in options if o.rpartition(".")[0] == prefix}
    match = difflib.get_close_matches(last, list(by_last), n=1, cutoff=0.6)
    return f" Did you mean '{by_last[match[0]]}'?" if match else ""


def explain_parse_error(message: str, known_keys: Iterable[str] = ()) -> str:
    """Turn a jsonargparse error message into one sentence: what was wrong and what was expected.

    Args:
        message: the parser's error message.
        known_keys: the option names the parser accepts, to suggest the closest one for an unknown key.

    Returns:
        The sentence; the message's first line when no rule matches.

    Example:
        >>> msg = "Subcommand 'fit' does not accept option 'trainer.max_epochss'"
        >>> explain_parse_error(msg, ["trainer.max_epochs"]).split(". ")[-1]
        "Did you mean 'trainer.max_epochs'?"
    """
    keys = _PARSER_KEY.findall(message)
    top = keys[0] if keys else None
    where = f" under config key '{top}'" if top else ""

    if m := _NO_FILE.search(message):
        return f"Config file {m.group(1).strip()} does not exist; expected a path to a YAML file."
    if m := _UNKNOWN_KEY.search(message):
        hint = _closest(m.group(1), known_keys)
        return f"Unknown config key '{m.group(1)}'; expected one of the keys listed by --help.{hint}"
    if m := _UNRECOGNIZED.search(message):
        option = m.group(1).lstrip("-")
        return (
            f"Unknown option '--{option}'; expected one of the options listed by --help.{_closest(option, known_keys)}"
        )
    if m := _OPTION.search(message):
        option, owner = m.group(1), m.group(2)
        if owner is None:
            owners = _CLASS_PATH.findall(message[: m.start()])
            owner = owners[-1] if owners else "the class"
        accepted = init_arguments(owner)
        expected = f"; expected one of: {', '.join(accepted)}" if accepted else ""
        return f"'{option}' is not an argument of {owner}{where}{expected}.{_closest(option, accepted)}"
    for pattern in _BAD_CLASS:
        if pattern.search(message):
            given = _GIVEN.findall(message)
            name = given[-1].strip() if given else "the given class"
            choices = package_classes(top or "")
            base = _CHOICES.get(top or "", ("a suitable class",))[0]
            listed = f" (the package's: {', '.join(choices)})" if choices else ""
            return (
                f"Unknown or unsuitable class '{name}'{where}; expected the class_path or short name of a {base} "
                f"subclass{listed}."
            )
    if m := _EXPECTED_TYPE.search(message):
        key = ".init_args.".join(keys) if keys else "a config key"
        return f"Config key '{key}' got {m.group(2).strip()!r}; expected a value of type {m.group(1)}."
    first = next((line.strip() for line in message.splitlines() if line.strip()), message)
    return first if first.endswith(".") else first + "."


class ExplainedErrorsMixin:
    """Mixin for jsonargparse parsers: errors end with one sentence naming the bad key and what was expected."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or os.environ.get(DEBUG_ENV):
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        known = [a.dest for a in parser._actions] + [s.lstrip("-") for a in parser._actions for s in a.option_strings]
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"tip: `{prog} --help` lists the accepted options; {DEBUG_ENV}=1 shows the full report.\n")
        sys.stderr.write(f"hwnas: error: {explain_parse_error(message, known)}\n")
        sys.exit(2)
