"""Pure: what an imported Lua ``IncomingHttpRequestFilter`` let each user do, read without running it.

Orthanc asks ``IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)`` before every
REST request and refuses it (403) unless the answer is ``true``. Executing a clinic's script here
would run arbitrary code, so the importer reads it instead, and only when the whole filter is
written in a small part of Lua whose meaning is certain:

- ``if … then … elseif … else … end`` and ``return <condition>``;
- conditions made of ``and``, ``or``, ``not``, parentheses, ``true``/``false``/``nil`` and
  ``==``/``~=`` between the method, the username or the URI and a string;
- ``T[username]`` where ``T`` is a table of string keys defined once at the top of the script
  (``local admins = { alice = true, ["bob"] = true }``).

Anything else (the caller's address, headers, string functions, loops, assignments) makes the
filter "not recognised", and the importer then grants nothing on a guess. The portal's own
generated filter is recognised by its header and read from its roles table.
"""

import re
from dataclasses import dataclass, field

from ..lua import HEADER

FILTER_NAME = "IncomingHttpRequestFilter"
METHODS = ("GET", "POST", "PUT", "DELETE")
UPLOAD = "/instances"
# URIs every filter is asked about, besides the ones it names itself.
PROBE_URIS = (UPLOAD, "/patients", "/tools/execute-script", "/tools/reset", "/portal-any-other-uri")
# Routes the portal keeps to admins whatever the role (deployments/lua.py): a role below admin
# fits without them.
ADMIN_ONLY = ("/tools/execute-script", "/instances/portal-probe/export")
# Most privileged first: an imported user gets the first role whose every grant the old filter gave.
ROLE_ORDER = ("admin", "operator", "viewer", "uploader")
ROLE_NEEDS = {
    "admin": "every method on every URI",
    "operator": "GET, POST and PUT on every URI but the admin-only ones",
    "viewer": "GET on every URI but the admin-only ones",
    "uploader": "POST /instances",
}


class NotRecognised(Exception):
    """The script leaves the subset read here; ``str()`` says where, for the report."""


# ---------------------------------------------------------------- tokens

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"0[xX][0-9A-Fa-f.]+(?:[pP][+-]?\d+)?|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?")
_LONG_OPEN = re.compile(r"\[(=*)\[")
_OPERATORS = ("...", "..", "==", "~=", "<=", ">=", "<<", ">>", "//", "::")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "\\": "\\", '"': '"', "'": "'"}
_ESCAPES["\n"] = "\n"
KEYWORDS = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in", "local",
    "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
}  # fmt: skip


@dataclass(frozen=True)
class Token:
    kind: str  # name, keyword, string, number, op, eof
    value: str
    line: int


def tokenize(text: str) -> list[Token]:
    tokens, i, n, line = [], 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif text.startswith("--", i):
            long = _LONG_OPEN.match(text, i + 2)
            if long:
                end = text.find(f"]{long.group(1)}]", long.end())
                if end < 0:
                    raise NotRecognised(f"line {line}: a --[[ comment is never closed")
                line += text.count("\n", i, end)
                i = end + len(long.group(1)) + 2
            else:
                while i < n and text[i] != "\n":
                    i += 1
        elif c in "\"'":
            value, i, line = _short_string(text, i, line)
            tokens.append(Token("string", value, line))
        elif _LONG_OPEN.match(text, i):
            long = _LONG_OPEN.match(text, i)
            end = text.find(f"]{long.group(1)}]", long.end())
            if end < 0:
                raise NotRecognised(f"line {line}: a [[ string is never closed")
            value = text[long.end() : end].removeprefix("\n")
            tokens.append(Token("string", value, line))
            line += text.count("\n", i, end)
            i = end + len(long.group(1)) + 2
        elif _NAME.match(text, i):
            word = _NAME.match(text, i).group()
            tokens.append(Token("keyword" if word in KEYWORDS else "name", word, line))
            i += len(word)
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            number = _NUMBER.match(text, i).group()
            tokens.append(Token("number", number, line))
            i += len(number)
        else:
            op = next((o for o in _OPERATORS if text.startswith(o, i)), c)
            tokens.append(Token("op", op, line))
            i += len(op)
    tokens.append(Token("eof", "", line))
    return tokens


def _short_string(text, i, line):
    """A quoted string; a decimal escape is a byte (the portal writes usernames so), read as UTF-8."""
    quote, i, out = text[i], i + 1, bytearray()
    while i < len(text) and text[i] != quote:
        c = text[i]
        if c == "\n":
            raise NotRecognised(f"line {line}: a string is not closed on its line")
        if c == "\\":
            nxt = text[i + 1 : i + 2]
            digits = re.match(r"\d{1,3}", text[i + 1 : i + 4])
            if nxt in _ESCAPES:
                out += _ESCAPES[nxt].encode()
                line += nxt == "\n"
                i += 2
            elif digits and int(digits.group()) < 256:
                out.append(int(digits.group()))
                i += 1 + len(digits.group())
            else:
                raise NotRecognised(f"line {line}: a string escape \\{nxt} that is not read here")
            continue
        out += c.encode()
        i += 1
    if i >= len(text):
        raise NotRecognised(f"line {line}: a string is never closed")
    try:
        return out.decode("utf-8"), i + 1, line
    except UnicodeDecodeError:
        raise NotRecognised(f"line {line}: a string that is not UTF-8") from None


# ---------------------------------------------------------------- the subset's syntax tree


@dataclass
class Script:
    params: list[str]
    body: list  # statements
    tables: dict[str, dict[str, object]] = field(default_factory=dict)


class _Parser:
    def __init__(self, tokens):
        self.tokens, self.pos = tokens, 0

    @property
    def tok(self):
        return self.tokens[self.pos]

    def take(self, kind=None, value=None):
        tok = self.tok
        if (kind and tok.kind != kind) or (value is not None and tok.value != value):
            want = value or kind
            raise NotRecognised(f"line {tok.line}: expected {want!r}, found {tok.value or tok.kind!r}")
        self.pos += 1
        return tok

    def at(self, value, kind=None):
        return self.tok.value == value and self.tok.kind in ((kind,) if kind else ("keyword", "op"))

    def block(self, stops):
        statements = []
        while not (self.tok.kind == "keyword" and self.tok.value in stops):
            if self.tok.kind == "eof":
                raise NotRecognised(f"line {self.tok.line}: the function is never closed")
            if self.at(";"):
                self.pos += 1
            elif self.at("if"):
                statements.append(self.if_statement())
            elif self.at("return"):
                self.pos += 1
                statements.append(("return", self.expression()))
                if self.at(";"):
                    self.pos += 1
                if not (self.tok.kind == "keyword" and self.tok.value in stops):
                    raise NotRecognised(f"line {self.tok.line}: code after a return")
            else:
                raise NotRecognised(f"line {self.tok.line}: {self.tok.value!r} is not read by the importer")
        return statements

    def if_statement(self):
        branches = []
        self.take("keyword", "if")
        condition = self.expression()
        self.take("keyword", "then")
        branches.append((condition, self.block({"elseif", "else", "end"})))
        while self.at("elseif"):
            self.pos += 1
            condition = self.expression()
            self.take("keyword", "then")
            branches.append((condition, self.block({"elseif", "else", "end"})))
        otherwise = []
        if self.at("else"):
            self.pos += 1
            otherwise = self.block({"end"})
        self.take("keyword", "end")
        return ("if", branches, otherwise)

    # Lua's precedence, lowest first: or, and, comparison, unary not.
    def expression(self):
        left = self.conjunction()
        while self.at("or"):
            self.pos += 1
            left = ("or", left, self.conjunction())
        return left

    def conjunction(self):
        left = self.comparison()
        while self.at("and"):
            self.pos += 1
            left = ("and", left, self.comparison())
        return left

    def comparison(self):
        left = self.unary()
        while self.tok.kind == "op" and self.tok.value in ("==", "~="):
            op = self.take().value
            left = (op, left, self.unary())
        if self.tok.kind == "op" and self.tok.value in ("<", ">", "<=", ">=", ".."):
            raise NotRecognised(f"line {self.tok.line}: the operator {self.tok.value} is not read by the importer")
        return left

    def unary(self):
        if self.at("not"):
            self.pos += 1
            return ("not", self.unary())
        return self.term()

    def term(self):
        tok = self.tok
        if tok.kind == "keyword" and tok.value in ("true", "false", "nil"):
            self.pos += 1
            return ("const", {"true": True, "false": False, "nil": None}[tok.value])
        if tok.kind == "string":
            self.pos += 1
            return ("const", tok.value)
        if self.at("("):
            self.pos += 1
            inner = self.expression()
            self.take("op", ")")
            return inner
        if tok.kind == "name":
            self.pos += 1
            if self.at("["):
                self.pos += 1
                key = self.take("name").value
                self.take("op", "]")
                return ("index", tok.value, key)
            if self.tok.kind == "op" and self.tok.value in ("(", ":", ".", "{") or self.tok.kind == "string":
                raise NotRecognised(f"line {tok.line}: {tok.value}{self.tok.value}… is not read by the importer")
            return ("var", tok.value)
        raise NotRecognised(f"line {tok.line}: {tok.value or tok.kind!r} is not read by the importer")

    def table(self):
        """``{ name = value, ["name"] = value, … }`` with string or boolean values."""
        self.take("op", "{")
        entries = {}
        while not self.at("}"):
            if self.tok.kind == "name" and self.tokens[self.pos + 1].value == "=":
                key = self.take().value
            elif self.at("["):
                self.pos += 1
                key = self.take("string").value
                self.take("op", "]")
            else:
                raise NotRecognised(f"line {self.tok.line}: a table entry that is not name = value")
            self.take("op", "=")
            value = self.term()
            if value[0] != "const":
                raise NotRecognised(f"line {self.tok.line}: a table value that is not a constant")
            entries[key] = value[1]
            if self.at(",") or self.at(";"):
                self.pos += 1
            elif not self.at("}"):
                raise NotRecognised(f"line {self.tok.line}: expected ',' or '}}' in a table")
        self.take("op", "}")
        return entries


def parse_filter(text: str) -> Script | None:
    """The script's last ``IncomingHttpRequestFilter`` (Lua keeps the last definition), or None
    when it defines none. Raises NotRecognised when it defines one outside the subset."""
    tokens = tokenize(text)
    found, tables, depth, i = None, {}, 0, 0
    while tokens[i].kind != "eof":
        tok = tokens[i]
        if tok.value == "function" and tokens[i + 1].value == FILTER_NAME:
            if depth or (i and tokens[i - 1].value == "local"):
                # Orthanc calls the global function: a local or nested one is not the filter it runs.
                raise NotRecognised(f"line {tok.line}: {FILTER_NAME} is defined inside a block or as a local")
            parser = _Parser(tokens)
            parser.pos = i + 2
            parser.take("op", "(")
            params = []
            while not parser.at(")"):
                params.append(parser.take("name").value)
                if parser.at(","):
                    parser.pos += 1
            parser.take("op", ")")
            body = parser.block({"end"})
            parser.take("keyword", "end")
            found = Script(params, body)
            i = parser.pos
            continue
        if depth == 0 and tok.value == "local" and tokens[i + 1].kind == "name" and tokens[i + 2].value == "=":
            if tokens[i + 3].value == "{":
                parser = _Parser(tokens)
                parser.pos = i + 3
                name = tokens[i + 1].value
                try:
                    tables[name] = parser.table()
                except NotRecognised:
                    tables[name] = None  # not a plain table: a filter that reads it is not recognised
                i = parser.pos if tables[name] is not None else i + 1
                continue
        if tok.kind == "name" and tok.value == FILTER_NAME and not (i and tokens[i - 1].value == "function"):
            raise NotRecognised(f"line {tok.line}: {FILTER_NAME} is assigned or called in a way not read here")
        if tok.kind == "keyword" and tok.value in ("function", "if", "do", "repeat"):
            depth += 1
        elif tok.kind == "keyword" and tok.value in ("end", "until"):
            depth -= 1
        i += 1
    if found is None:
        return None
    # A table the filter reads is used nowhere else, so nothing can change it after its definition.
    for name in _tables_read(found.body):
        if tables.get(name) is None:
            raise NotRecognised(f"{name} is not a table of constants defined at the top of the script")
        uses = sum(1 for t in tokens if t.kind == "name" and t.value == name)
        if uses > 1 + _reads_of(found.body, name):
            raise NotRecognised(f"the table {name} is used elsewhere in the script, where it could change")
        found.tables[name] = tables[name]
    return found


def _walk(node):
    if isinstance(node, tuple):
        yield node
        for part in node:
            yield from _walk(part)
    elif isinstance(node, list):
        for part in node:
            yield from _walk(part)


def _tables_read(body):
    return {n[1] for n in _walk(body) if n and n[0] == "index"}


def _reads_of(body, name):
    return sum(1 for n in _walk(body) if n and n[0] == "index" and n[1] == name)


# ---------------------------------------------------------------- evaluation


def _check_names(script):
    """Only the method, the URI and the username may decide; the caller's address or headers may not."""
    names = {n[1] for n in _walk(script.body) if n and n[0] == "var"}
    names |= {n[2] for n in _walk(script.body) if n and n[0] == "index"}
    roles = dict(zip(script.params, ("method", "uri", "ip", "username", "headers"), strict=False))
    for name in sorted(names):
        if roles.get(name) not in ("method", "uri", "username"):
            what = roles.get(name) or "a global variable"
            raise NotRecognised(f"the filter reads {name} ({what})")
    return {v: k for k, v in roles.items()}


def _value(node, env, tables):
    kind = node[0]
    if kind == "const":
        return node[1]
    if kind == "var":
        return env[node[1]]
    if kind == "index":
        return tables[node[1]].get(env[node[2]])
    if kind == "not":
        return not _truthy(_value(node[1], env, tables))
    if kind == "and":
        left = _value(node[1], env, tables)
        return _value(node[2], env, tables) if _truthy(left) else left
    if kind == "or":
        left = _value(node[1], env, tables)
        return left if _truthy(left) else _value(node[2], env, tables)
    left, right = _value(node[1], env, tables), _value(node[2], env, tables)
    same = type(left) is type(right) and left == right
    return same if kind == "==" else not same


def _truthy(value):
    return value is not None and value is not False


_NO_ANSWER = object()  # the block ended without a return: Lua goes on after it


def _run(statements, env, tables):
    for statement in statements:
        if statement[0] == "return":
            return _value(statement[1], env, tables)
        _, branches, otherwise = statement
        chosen = next((block for condition, block in branches if _truthy(_value(condition, env, tables))), otherwise)
        result = _run(chosen, env, tables)
        if result is not _NO_ANSWER:
            return result
    return _NO_ANSWER


def decide(script: Script, method: str, uri: str, username: str) -> bool:
    """Whether the filter lets this request through. No boolean answer is a refusal: Orthanc
    then reports a Lua error and does not serve the request."""
    names = _check_names(script)
    env = {names[k]: v for k, v in (("method", method), ("uri", uri), ("username", username)) if k in names}
    return _run(script.body, env, script.tables) is True


def _uris(script):
    """The URIs the filter names, and a few more: a decision that holds for all holds for any."""
    named = set()
    for node in _walk(script.body):
        if node and node[0] in ("==", "~="):
            for side in node[1:]:
                if side[0] == "const" and isinstance(side[1], str) and side[1].startswith("/"):
                    named.add(side[1])
    return sorted(named | set(PROBE_URIS) | set(ADMIN_ONLY))


# ---------------------------------------------------------------- roles


@dataclass
class Inferred:
    role: str
    is_active: bool
    reason: str
    decide: bool = False  # the admin should look at it: less than before, or no role fits


def _allowed(script, username):
    return {(m, u) for m in METHODS for u in _uris(script) if decide(script, m, u, username)}


def role_for(script: Script, username: str) -> Inferred:
    """The most privileged portal role whose every grant the old filter gave this user."""
    uris = _uris(script)
    allowed = _allowed(script, username)

    def everywhere(*methods):
        return all((m, u) in allowed for m in methods for u in uris if u not in ADMIN_ONLY)

    fits = {
        "admin": everywhere(*METHODS),
        "operator": everywhere("GET", "POST", "PUT"),
        "viewer": everywhere("GET"),
        "uploader": ("POST", UPLOAD) in allowed,
    }
    role = next((r for r in ROLE_ORDER if fits[r]), None)
    if role is None:
        if not allowed:
            return Inferred("uploader", False, "the old filter refused this user everything: imported without access")
        shown = ", ".join(f"{m} {_shown_uri(u)}" for m, u in sorted(allowed)[:4])
        return Inferred(
            "uploader",
            False,
            f"the old filter allowed only part of what any portal role grants ({shown}…): imported without "
            "access; choose a role and activate the account",
            decide=True,
        )
    granted = _granted(role, uris)
    # The admin-only routes take POST: a GET there grants nothing worth naming.
    extra = sorted((m, u) for m, u in allowed - granted if not (m == "GET" and u in ADMIN_ONLY))
    if role == "admin" or not extra:
        return Inferred(role, True, f"the old filter allowed {ROLE_NEEDS[role]}")
    shown = ", ".join(f"{m} {_shown_uri(u)}" for m, u in extra[:3]) + ("…" if len(extra) > 3 else "")
    return Inferred(
        role,
        True,
        f"the old filter allowed {ROLE_NEEDS[role]}, and also {shown}, which the {role} role does not "
        "grant: raise the role if this user needs them",
        decide=True,
    )


def _shown_uri(uri):
    return "/instances/…/export" if uri == ADMIN_ONLY[1] else ("any other URI" if uri == PROBE_URIS[-1] else uri)


def _granted(role, uris):
    methods = {"admin": METHODS, "operator": ("GET", "POST", "PUT"), "viewer": ("GET",), "uploader": ()}[role]
    granted = {(m, u) for m in methods for u in uris if role == "admin" or u not in ADMIN_ONLY}
    if role == "uploader":
        granted.add(("POST", UPLOAD))
    return granted


def portal_roles(text: str) -> dict[str, str] | None:
    """The roles table of a filter the portal generated itself, or None for another script."""
    if not text.startswith(HEADER):
        return None
    tables = {}
    tokens = tokenize(text)
    for i, tok in enumerate(tokens):
        if tok.value == "local" and tokens[i + 1].value == "roles" and tokens[i + 3].value == "{":
            parser = _Parser(tokens)
            parser.pos = i + 3
            tables = parser.table()
    return {k: v for k, v in tables.items() if isinstance(v, str)}


@dataclass
class FilterReading:
    """How the imported scripts decide, for the importer's report and its role choices."""

    kind: str  # none (no filter: every user could do everything), portal, recognised, unknown
    note: str
    script: Script | None = None
    roles: dict = field(default_factory=dict)  # kind portal: username → role

    def role_for(self, username) -> Inferred:
        if self.kind == "none":
            return Inferred(
                "admin", True, "the old configuration had no request filter: every user could do everything"
            )
        if self.kind == "portal":
            role = self.roles.get(username)
            if role in ROLE_ORDER:
                return Inferred(role, True, "the role the portal's own filter gave this user")
            return Inferred("uploader", False, "not in the portal filter's roles: imported without access", True)
        if self.kind == "recognised":
            return role_for(self.script, username)
        return Inferred(
            "uploader",
            False,
            f"the old request filter could not be read with confidence ({self.note}): imported with the least-"
            "privileged role and without access; choose the role and activate the account",
            decide=True,
        )


def read_filter(scripts: dict[str, str | None]) -> FilterReading:
    """``scripts``: each LuaScripts entry, in Orthanc's loading order, → its text (None: not readable
    here). The last script that defines the filter wins, as in Orthanc's one Lua context."""
    reading = FilterReading("none", f"no script defines {FILTER_NAME}")
    for entry, text in scripts.items():
        if text is None:
            return FilterReading("unknown", f"{entry} could not be read")
        roles = portal_roles(text)
        if roles is not None:
            reading = FilterReading("portal", f"{entry} is the portal's own filter", roles=roles)
            continue
        try:
            script = parse_filter(text)
            if script is not None:
                _check_names(script)
        except NotRecognised as exc:
            return FilterReading("unknown", f"{entry}: {exc}")
        if script is not None:
            reading = FilterReading("recognised", f"{entry} defines {FILTER_NAME}", script=script)
    return reading
