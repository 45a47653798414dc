"""No function of mxbuild takes more than 6 parameters without saying why: a
`# params: <reason>` comment on its def line(s) or the line above. The rest take a frozen
dataclass of options instead."""
import ast

from ..conftest import ROOT

LIMIT = 6
REASON = "# params:"


def parameter_count(node: ast.FunctionDef) -> int:
    a = node.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
    return len(names) + bool(a.vararg) + bool(a.kwarg)


def long_signatures() -> list[tuple[str, str, bool]]:
    """(where, name, has a reason) of each function over the limit."""
    out = []
    for path in sorted((ROOT / "mxbuild").rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    parameter_count(node) > LIMIT:
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                body = node.body[0].lineno
                # the line above, and the def's own lines up to its body
                head = lines[start - 2:body - 1] if start > 1 else lines[:body - 1]
                out.append((f"{path.relative_to(ROOT)}:{node.lineno}", node.name,
                            any(REASON in line for line in head)))
    return out


def test_every_function_over_6_parameters_says_why():
    unexplained = [f"{where} {name}" for where, name, ok in long_signatures() if not ok]
    assert unexplained == []


def test_the_counter_counts_every_kind_of_parameter():
    fn = ast.parse("def f(self, a, b=1, *args, c, d=2, **kw):\n    pass").body[0]
    assert parameter_count(fn) == 6
