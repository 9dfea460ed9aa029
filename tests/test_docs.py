"""The docs show only commands that exist: every `runway-archiver` command line in README.md and
docs/*.md (in code blocks and inline code) names a subcommand of the real parser and only flags that
subcommand takes, and every `make X` shown is a target of the Makefile."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from runway_archiver.cli import build_parser

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
# How a command is started in the docs: installed, from the project's venv, or through uv.
PROGRAM = re.compile(r"^(?:\S*/)?runway-archiver$")


def _code(text: str) -> list[str]:
    """Every line of every fenced block (continuations joined), then every inline code span."""
    lines: list[str] = []
    for block in re.findall(r"^\s*```[^\n]*\n(.*?)^\s*```", text, re.DOTALL | re.MULTILINE):
        lines += block.replace("\\\n", " ").splitlines()
    prose = re.sub(r"^\s*```[^\n]*\n.*?^\s*```", "", text, flags=re.DOTALL | re.MULTILINE)
    return lines + re.findall(r"`([^`\n]+)`", prose)


def _commands(line: str) -> list[list[str]]:
    """The runway-archiver invocations on one shell line: after a prompt, a pipe or variable assignments."""
    line = re.sub(r"^\s*\$ ", "", line)
    line = re.split(r"\s#\s", line, maxsplit=1)[0]  # a trailing comment
    found = []
    for segment in re.split(r"\|\|?|&&|;", line):
        try:
            words = shlex.split(segment)
        except ValueError:  # an unbalanced quote: prose, not a command
            continue
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]
        if words[:2] == ["uv", "run"]:
            words = words[2:]
        if len(words) > 1 and PROGRAM.match(words[0]):  # the bare name is the program, not a command
            found.append(words[1:])
    return found


def _synopses(line: str, subcommands: dict[str, argparse.ArgumentParser]) -> list[list[str]]:
    """A command written without the program, as the operations page's bullets do: `show TASK_ID [--link-seconds N]`."""
    first = line.split(" ", 1)[0]
    if first not in subcommands or PROGRAM.match(first):
        return []
    flags = re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", line)
    return [[first, *flags]] if flags else []


def _shown() -> list[tuple[str, list[str]]]:
    subcommands = _subcommands()
    return [
        (page.relative_to(REPO_ROOT).as_posix(), words)
        for page in PAGES
        for line in _code(page.read_text())
        for words in _commands(line) + _synopses(line, subcommands)
    ]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def check(words: list[str], subcommands: dict[str, argparse.ArgumentParser]) -> list[str]:
    """What is wrong with one command as shown (empty when the CLI has it, flags and all)."""
    if not words or words[0] not in subcommands:
        return [f"no subcommand {words[0] if words else '(none)'!r}"]
    options = subcommands[words[0]]._option_string_actions
    flags = [word.split("=", 1)[0] for word in words[1:] if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", word)]
    return [f"{words[0]} has no {flag}" for flag in flags if flag not in options]


def test_the_docs_show_commands() -> None:
    # the extraction itself works: the pages show dozens of commands, from prompts, pipes and prose
    shown = _shown()
    assert len(shown) >= 20
    assert ["forget", "a4a12768-abe4-4f16-8eb1-a9dc834649aa"] in [words for _, words in shown]
    assert ["track"] in [words for _, words in shown]  # `cut ... | runway-archiver track`


@pytest.mark.parametrize(("page", "words"), _shown(), ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_every_command_shown_exists_with_the_flags_shown(page: str, words: list[str]) -> None:
    assert check(words, _subcommands()) == [], f"{page} shows `runway-archiver {' '.join(words)}`"


def test_the_check_refuses_what_the_cli_does_not_have() -> None:
    subcommands = _subcommands()
    assert check(["verify", "--all", "--deep"], subcommands) == []
    assert check(["export", "-o", "x.csv", "--format=csv"], subcommands) == []
    assert check(["verify", "--everything"], subcommands) == ["verify has no --everything"]
    assert check(["show", "T", "--link-seconds", "60", "--status", "FAILED"], subcommands) == ["show has no --status"]
    assert check(["purge", "--all"], subcommands) == ["no subcommand 'purge'"]


def test_every_subcommand_is_shown_somewhere() -> None:
    shown = {words[0] for _, words in _shown() if words}
    assert set(_subcommands()) - shown == set()


def _targets() -> set[str]:
    makefile = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))


def _make_shown() -> list[tuple[str, str]]:
    return sorted(
        {
            (page.relative_to(REPO_ROOT).as_posix(), target)
            for page in PAGES
            for line in _code(page.read_text())
            for target in re.findall(r"(?:^|[\s|;&(])make ([a-z][a-z-]*)", re.sub(r"^\s*\$ ", "", line))
        }
    )


def test_the_docs_show_make_targets() -> None:
    assert {"demo", "test", "deploy", "api-key", "reliability"} <= {target for _, target in _make_shown()}


@pytest.mark.parametrize(("page", "target"), _make_shown())
def test_every_make_target_shown_exists(page: str, target: str) -> None:
    assert target in _targets(), f"{page} shows `make {target}`, which the Makefile does not have"


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"^\s*```.*?^\s*```", "", page.read_text(), flags=re.DOTALL | re.MULTILINE)
    headings = re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def _links() -> list[tuple[str, str]]:
    return [
        (page.relative_to(REPO_ROOT).as_posix(), target)
        for page in PAGES
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text())
        if not target.startswith(("http://", "https://"))
    ]


@pytest.mark.parametrize(("page", "target"), _links())
def test_every_link_between_the_pages_resolves(page: str, target: str) -> None:
    path, _, anchor = target.partition("#")
    linked = (REPO_ROOT / page).parent / path if path else REPO_ROOT / page
    assert linked.exists(), f"{page} links to {target}: no such file"
    if anchor:
        assert anchor in _anchors(linked), f"{page} links to {target}: no such heading"


def _code_map() -> dict[str, str]:
    """The README's map of the code: path as written (folders end in /) -> its line."""
    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("\n## A map of the code\n", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    folder = ""
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        path = line.split()[0]
        if not line.startswith(" "):
            folder = path if path.endswith("/") else ""
            entries[path] = line
        else:
            entries[folder + path] = line
    return entries


def test_every_module_in_the_code_map_exists() -> None:
    missing = [path for path in _code_map() if path.endswith((".py", "/")) and not (REPO_ROOT / path).exists()]
    assert missing == []


@pytest.mark.parametrize("package", ["functions/runway_archiver_lambda", "src/runway_archiver"])
def test_the_code_map_names_every_module_of_both_packages(package: str) -> None:
    modules = {
        str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / package).rglob("*.py") if path.name != "__init__.py"
    }
    assert modules - set(_code_map()) == set()


# A number of the project's own tracker means nothing to a reader of the docs or the code: each
# says what is true now and why. The same search as `grep -rniE "issue [0-9]"` over these paths.
HISTORY_REFERENCE = re.compile(r"\bissues? #?[0-9]", re.IGNORECASE)
WRITTEN = [REPO_ROOT / "README.md", REPO_ROOT / "docs", REPO_ROOT / "src", REPO_ROOT / "functions", REPO_ROOT / "tests"]


def _written_files() -> list[Path]:
    found: list[Path] = []
    for place in WRITTEN:
        files = [place] if place.is_file() else sorted(place.rglob("*"))
        found += [path for path in files if path.is_file() and "__pycache__" not in path.parts]
    return found


def test_no_docs_comments_or_tests_refer_to_tracker_issues() -> None:
    references = []
    for path in _written_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # a binary file (an image, a video sample): no prose
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if HISTORY_REFERENCE.search(line):
                references.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()[:100]}")
    assert references == [], "say what is true now and why, not which issue did it:\n" + "\n".join(references)


def test_the_tracker_search_finds_what_it_should() -> None:
    number = 15  # the examples are built, or this file would match itself
    assert HISTORY_REFERENCE.search(f"(added by Issue {number}; older items lack it)")
    assert HISTORY_REFERENCE.search(f"see issues #{number} and {number + 1}")
    assert not HISTORY_REFERENCE.search("the issue it raises is logged; 15 retries")
