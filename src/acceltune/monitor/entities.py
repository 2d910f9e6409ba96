"""Entity tagging from an entities file: an item mentions an entity when its text contains one of the
entity's tickers, its name or one of its aliases.

    entities:
      - name: Nokia
        tickers: [NOK, NOKIA.HE]
        aliases: [Nokia Oyj, Nokia Corporation]

Rules: a mention is a whole word — not preceded or followed by a letter, digit or underscore ("Nokia's"
mentions Nokia, "Nokiaphone" does not). Tickers are case-sensitive and may carry a cashtag ("$NOK"), so the
ticker "ALL" never matches the word "all"; names and aliases are case-insensitive. An item is tagged with
every entity it mentions, each once; an item that names its ``entity`` is not tagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from acceltune.errors import UserError


@dataclass(frozen=True)
class Entity:
    name: str
    tickers: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


def _alternation(words: list[str], flags: int) -> re.Pattern | None:
    if not words:
        return None
    # Longest first, so that "Bank of America" wins over "America" where both are someone's alias.
    body = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", flags)


class Tagger:
    """Finds the entities a text mentions (two compiled patterns, one pass each)."""

    def __init__(self, entities: list[Entity]):
        self.entities = entities
        self._by_ticker = {t: e.name for e in entities for t in e.tickers}
        self._by_word = {w.casefold(): e.name for e in entities for w in (e.name, *e.aliases)}
        # "$" before a ticker is a cashtag: allowed, and not part of the ticker's word boundary.
        self._tickers = _alternation(list(self._by_ticker), 0)
        self._words = _alternation([e.name for e in entities] + [a for e in entities for a in e.aliases], re.IGNORECASE)

    def tag(self, text: str) -> list[str]:
        found: dict[str, None] = {}
        if self._tickers is not None:
            for m in self._tickers.finditer(text):
                found[self._by_ticker[m.group(0)]] = None
        if self._words is not None:
            for m in self._words.finditer(text):
                found[self._by_word[m.group(0).casefold()]] = None
        return list(found)


def load_entities(path: str | Path) -> Tagger:
    """The tagger of an entities YAML file; one-line errors naming what is wrong."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"--entities {path}: no such file")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"--entities {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    rows = raw.get("entities") if isinstance(raw, dict) else raw
    if not isinstance(rows, list) or not rows:
        raise UserError(f"--entities {path}: expected 'entities:' with a list of {{name, tickers, aliases}}")
    entities, seen = [], set()
    for i, row in enumerate(rows):
        where = f"--entities {path}: entry {i + 1}"
        if not isinstance(row, dict) or not isinstance(row.get("name"), str) or not row["name"].strip():
            raise UserError(f"{where} needs a non-empty 'name'")
        unknown = set(row) - {"name", "tickers", "aliases"}
        if unknown:
            raise UserError(f"{where} has unknown key(s) {', '.join(sorted(unknown))}; use name, tickers, aliases")
        lists = {}
        for key in ("tickers", "aliases"):
            value = row.get(key) or []
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise UserError(f"{where}: '{key}' must be a list of non-empty strings")
            lists[key] = tuple(v.strip() for v in value)
        name = row["name"].strip()
        if name in seen:
            raise UserError(f"{where}: {name!r} is listed twice")
        seen.add(name)
        entities.append(Entity(name, lists["tickers"], lists["aliases"]))
    return Tagger(entities)
