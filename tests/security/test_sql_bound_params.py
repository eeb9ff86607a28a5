"""Every SQL statement in include/ takes its values as bound parameters.

ruff's `S608` (in `make lint`) only sees SELECT/INSERT/UPDATE/DELETE strings. This scan walks the AST of
every module under include/ and flags (a) a call to a SQL sink (`text`, `execute`, `exec_driver_sql`, ...)
whose statement is built at run time (f-string, `%`, `+`, `.format`, `.replace`, `.join`), and (b) any
f-string that starts like a SQL statement. The few statements that cannot take bound parameters (DDL,
PRAGMA, BEGIN) are listed below with the reason their interpolated part is not user input.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

INCLUDE = Path(__file__).resolve().parents[2] / "include"
SINKS = {"text", "execute", "executemany", "executescript", "exec_driver_sql", "literal_column"}
SQL_START = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|SET|PRAGMA|BEGIN|WITH|TRUNCATE|GRANT|VACUUM|LOCK|COPY)\b",
    re.IGNORECASE)

#: (path under include/, source snippet) → why interpolation is safe there. A new entry needs a reason.
ALLOWED = {
    ("infersweep/store/db.py", 'f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}"'):
        "PRAGMA takes no parameters; the value is an int parsed from the environment at import",
    ("infersweep/store/db.py", 'f"BEGIN {mode}"'):
        "BEGIN takes no parameters; mode is an internal execution option ('' or 'IMMEDIATE')",
    ("infersweep/store/migrations/versions/0001_initial.py", 'f"CREATE VIEW {name} AS {sql}"'):
        "DDL; view names and bodies are module constants of the migration",
    ("infersweep/store/migrations/versions/0001_initial.py", 'f"DROP VIEW IF EXISTS {name}"'):
        "DDL; view names are module constants of the migration",
    ("infersweep/store/migrations/versions/0001_initial.py", "SELECT * FROM ("):
        "a view body assembled from module constants (column lists), never from input",
    ("infersweep/store/migrations/versions/0002_group_status_green.py", 'op.execute("CREATE VIEW v_run_summary AS "'):
        "DDL; the view body and its status list are module constants",
}


def _dynamic(node: ast.expr) -> bool:
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return True
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"format", "replace", "join", "strip"})


def _leading_text(node: ast.expr) -> str:
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) for v in node.values if isinstance(v, ast.Constant))
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return ""


def findings(root: Path = INCLUDE) -> list[tuple[str, int, str]]:
    """(path, line, source) of every dynamically built SQL statement under `root`."""
    out = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text()
        rel = str(path.relative_to(root))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in SINKS and _dynamic(node.args[0]):
                    out.append((rel, node.lineno, ast.get_source_segment(source, node) or ""))
            elif (isinstance(node, ast.JoinedStr) and _dynamic(node)
                  and SQL_START.match(_leading_text(node))):
                out.append((rel, node.lineno, ast.get_source_segment(source, node) or ""))
    return out


def _allowed(rel: str, source: str) -> bool:
    return any(rel == path and snippet in source for path, snippet in ALLOWED)


def test_no_sql_statement_interpolates_values() -> None:
    found = findings()
    offending = [f"{rel}:{line}: {src[:120]}" for rel, line, src in found if not _allowed(rel, src)]
    assert offending == [], "build SQL with bound parameters (text(':name') / %s with a tuple):\n" + "\n".join(offending)
    # The allowlist stays honest: every entry still matches something (delete it when the code goes).
    for path, snippet in ALLOWED:
        assert any(rel == path and snippet in src for rel, _, src in found), f"stale allowlist entry: {path}: {snippet}"


def test_the_scan_catches_interpolated_sql(tmp_path: Path) -> None:
    """The scanner flags the patterns it exists for (so a green run above means something)."""
    bad = tmp_path / "infersweep" / "bad.py"
    bad.parent.mkdir()
    bad.write_text(
        "from sqlalchemy import text\n"
        "def f(conn, name, n):\n"
        "    conn.execute(text(f\"SELECT * FROM runs WHERE run_id = '{name}'\"))\n"
        "    conn.exec_driver_sql('DELETE FROM runs WHERE id = %s' % n)\n"
        "    sql = f'UPDATE runs SET status = {name}'\n"
        "    conn.execute(text('SELECT 1 WHERE x = :x'), {'x': name})\n"
    )
    lines = sorted(line for _, line, _ in findings(tmp_path))
    assert lines == [3, 3, 4, 5]  # line 3: the f-string itself and the text() call; line 6 is bound: clean
