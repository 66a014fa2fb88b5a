"""Target expressions: a hand-written tokenizer and recursive-descent parser.

The grammar (keywords are case-insensitive; ``,`` binds tighter than ``not``,
``not`` than ``and``, ``and`` than ``or``)::

    expr    := and ("or" and)*
    and     := unary ("and" unary)*
    unary   := "not" unary | primary
    primary := "(" expr ")" | atom ("," atom)*
    atom    := "G@" NAME                  a group
             | FIELD ("=" | "!=") VALUE ("," VALUE)*   a fact selector (values are globs)
             | FIELD ("<" | "<=" | ">" | ">=") NUMBER  a numeric comparison
             | WORD                       uuid, unique uuid prefix, name or serial (or a glob)

A WORD or VALUE is a run of characters other than space, ``(``, ``)``, ``,``,
``=``, ``<``, ``>``, quotes and ``!=``; quote it ('rack 1', "and") to use any of those.
Every error says what was expected and points at the position in the text.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwfleet.errors import HwfleetError

GROUP_PREFIX = "G@"
KEYWORDS = frozenset({"and", "or", "not"})
#: Longest expression accepted: a target is typed (or stored in a group), not generated.
MAX_EXPR = 4096
#: Deepest nesting of parentheses and ``not``: recursion stays far from Python's limit.
MAX_DEPTH = 64
_SPECIAL = set(" \t\n\r(),='\"<>")
#: The numeric comparison operators (``st_id<0``, ``st_id>=16``).
COMPARISONS = ("<", "<=", ">", ">=")


class TargetError(HwfleetError, ValueError):
    """A target expression that cannot be parsed or resolved; says where and why."""

    def __init__(self, msg: str, expr: str = "", pos: int | None = None) -> None:
        self.msg = msg
        self.expr = expr
        self.pos = pos
        if pos is None:
            super().__init__(msg)
        else:
            caret = " " * pos + "^"
            super().__init__(f"{msg} at position {pos + 1}:\n  {expr}\n  {caret}")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "(" ")" "," "=" "!=" "<" "<=" ">" ">=" "word" "quoted" "end"
    text: str
    pos: int


def tokenize(expr: str) -> list[Token]:
    """The tokens of ``expr``, ending with an ``end`` token."""
    if len(expr) > MAX_EXPR:
        raise TargetError(f"the expression is longer than {MAX_EXPR} characters")
    tokens: list[Token] = []
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch.isspace():
            i += 1
        elif ch in "(),=":
            tokens.append(Token(ch, ch, i))
            i += 1
        elif ch in "<>":
            op = expr[i : i + 2] if expr.startswith("=", i + 1) else ch
            tokens.append(Token(op, op, i))
            i += len(op)
        elif ch == "!" and expr.startswith("!=", i):
            tokens.append(Token("!=", "!=", i))
            i += 2
        elif ch in "'\"":
            end = expr.find(ch, i + 1)
            if end < 0:
                raise TargetError(f"unclosed quote {ch}", expr, i)
            tokens.append(Token("quoted", expr[i + 1 : end], i))
            i = end + 1
        else:
            start = i
            while (
                i < len(expr)
                and expr[i] not in _SPECIAL
                and not expr[i].isspace()  # every kind of space ends a word, as it starts one
                and not expr.startswith("!=", i)
            ):
                i += 1
            tokens.append(Token("word", expr[start:i], start))
    tokens.append(Token("end", "", len(expr)))
    return tokens


# --- the syntax tree ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Word:
    """A uuid, a uuid prefix, a name or a serial; a glob if it has ``*``, ``?`` or ``[``."""

    text: str
    pos: int

    @property
    def is_glob(self) -> bool:
        return any(c in self.text for c in "*?[")


@dataclass(frozen=True, slots=True)
class Fact:
    """``field=v1,v2`` (any value matches, as a glob) or ``field!=…`` (none matches)."""

    field: str
    values: tuple[str, ...]
    negated: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Compare:
    """``field<N`` (``<=``, ``>``, ``>=``): devices whose field is a number in that range;
    ``text`` is the number as typed (kept so the expression unparses as written)."""

    field: str
    op: str
    value: float
    text: str
    pos: int


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]


Node = Word | Fact | Compare | Group | Not | And | Or


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens = tokenize(expr)
        self.i = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text.lower() == word

    def fail(self, msg: str, token: Token | None = None) -> TargetError:
        return TargetError(msg, self.expr, (token or self.peek()).pos)

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.fail("empty target: give a uuid, a name, a glob, a selector or a group")
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            what = "')' without '('" if token.kind == ")" else f"{token.text!r}"
            raise self.fail(f"unexpected {what} (join terms with and, or, or a comma)")
        return node

    def parse_or(self) -> Node:
        operands = [self.parse_and()]
        while self.keyword("or"):
            self.take()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Node:
        operands = [self.parse_unary()]
        while self.keyword("and"):
            self.take()
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_unary(self) -> Node:
        if self.keyword("not"):
            self.take()
            return Not(self.nested(self.parse_unary))
        return self.parse_primary()

    def nested(self, parse: object) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return parse()  # type: ignore[operator,no-any-return]
        finally:
            self.depth -= 1

    def parse_primary(self) -> Node:
        token = self.peek()
        if token.kind == "(":
            self.take()
            node = self.nested(self.parse_or)
            if self.peek().kind != ")":
                raise self.fail(f"expected ')' (the '(' at column {token.pos + 1} is not closed)")
            self.take()
            return node
        atoms = [self.parse_atom()]
        while self.peek().kind == ",":
            self.take()
            atoms.append(self.parse_atom())
        return atoms[0] if len(atoms) == 1 else Or(tuple(atoms))

    def value(self, what: str) -> Token:
        token = self.peek()
        if token.kind == "quoted" or (token.kind == "word" and token.text):
            return self.take()
        raise self.fail(f"expected {what}")

    def parse_atom(self) -> Node:
        token = self.peek()
        if token.kind == "word" and token.text.lower() in KEYWORDS:
            raise self.fail(f"expected a target before {token.text!r} (quote it to mean a name)")
        if token.kind not in ("word", "quoted"):
            found = "the end" if token.kind == "end" else repr(token.text)
            raise self.fail(f"expected a uuid, name, glob, selector or group, found {found}")
        self.take()
        if self.peek().kind in ("=", "!=", *COMPARISONS):
            op = self.take()
            if token.kind != "word" or not token.text.replace("_", "").isalnum():
                raise self.fail(f"{token.text!r} is not a field name", token)
            if op.kind in COMPARISONS:
                return self.compare(token, op)
            values = [self.value(f"a value after '{op.text}'").text]
            while self.peek().kind == "," and self.tokens[self.i + 1].kind in ("word", "quoted"):
                following = self.tokens[self.i + 2].kind
                if following in ("=", "!="):
                    break  # "a=b,c=d": the comma starts the next atom
                self.take()
                values.append(self.take().text)
            return Fact(token.text.lower(), tuple(values), op.kind == "!=", token.pos)
        if token.kind == "word" and token.text.startswith(GROUP_PREFIX):
            name = token.text[len(GROUP_PREFIX) :]
            if not name:
                raise self.fail("expected a group name after G@", token)
            return Group(name, token.pos)
        return Word(token.text, token.pos)

    def compare(self, field: Token, op: Token) -> Compare:
        number = self.peek()
        found = "the end" if number.kind == "end" else repr(number.text)
        if number.kind not in ("word", "quoted"):
            raise self.fail(f"expected a number after '{op.text}', found {found}")
        try:
            value = float(number.text)
        except ValueError:
            value = float("nan")
        if value != value or value in (float("inf"), float("-inf")):  # nan, inf: no order
            raise self.fail(f"expected a number after '{op.text}', found {found}")
        self.take()
        return Compare(field.text.lower(), op.kind, value, number.text, field.pos)


def parse(expr: str) -> Node:
    """The syntax tree of ``expr``; :class:`TargetError` pointing at the fault otherwise."""
    return _Parser(expr).parse()


def is_single(node: Node) -> bool:
    """Whether ``node`` names one device by syntax (a plain uuid, prefix, name or serial):
    commands keep their one-device output for it, and use the many-device one otherwise."""
    return isinstance(node, Word) and not node.is_glob


def unparse(node: Node) -> str:
    """Text that parses back to ``node`` (used by tests and to show stored groups)."""
    if isinstance(node, Word):
        return _quote(node.text)
    if isinstance(node, Group):
        return GROUP_PREFIX + node.name
    if isinstance(node, Fact):
        op = "!=" if node.negated else "="
        return f"{node.field}{op}{','.join(_quote(v) for v in node.values)}"
    if isinstance(node, Compare):
        return f"{node.field}{node.op}{node.text}"
    if isinstance(node, Not):
        return f"not ({unparse(node.operand)})"
    joiner = " and " if isinstance(node, And) else " or "
    return joiner.join(f"({unparse(n)})" for n in node.operands)


def _quote(text: str) -> str:
    plain = text and not any(c in _SPECIAL or c == "!" or c.isspace() for c in text)
    if plain and text.lower() not in KEYWORDS and not text.startswith(GROUP_PREFIX):
        return text
    return f"'{text}'" if "'" not in text else f'"{text}"'
