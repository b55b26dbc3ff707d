"""Safe filter expressions: select examples of a joined frame with a small expression language.

Filters come from the user (typed on a page or saved as slices), so they are never `eval`ed: the expression is
parsed and compiled node by node from a small subset of Python (column names, constants, comparisons, `in`,
`and`/`or`/`not`, arithmetic on numbers), and anything else is refused before any data is touched.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kd_analysis.exceptions import KDLensError

MAX_FILTER_CHARS = 2_000
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_SYMBOLS = {
    ast.Pow: "'**'",
    ast.Mod: "'%'",
    ast.FloorDiv: "'//'",
    ast.MatMult: "'@'",
    ast.LShift: "'<<'",
    ast.RShift: "'>>'",
    ast.BitAnd: "'&' (use 'and')",
    ast.BitOr: "'|' (use 'or')",
    ast.BitXor: "'^'",
    ast.Invert: "'~' (use 'not')",
}
_REFUSED = {
    ast.Attribute: "attribute access",
    ast.Call: "a function call",
    ast.Subscript: "indexing",
    ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator",
    ast.IfExp: "an if-else expression",
    ast.NamedExpr: "an assignment",
    ast.Starred: "unpacking",
    ast.JoinedStr: "an f-string",
    ast.Dict: "a dictionary",
    ast.Set: "a set outside 'in'",
    ast.List: "a list outside 'in'",
    ast.Tuple: "a tuple outside 'in'",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "a slice",
}

Value = Any  # a pandas Series (one value per row) or a Python constant
_Fn = Callable[[pd.DataFrame], Value]


def column_list(columns: Iterable[str]) -> str:
    names = [str(c) for c in columns]
    shown = ", ".join(names[:40])
    return shown + (f" and {len(names) - 40} more" if len(names) > 40 else "")


def _bool_series(result: pd.Series, nulls: np.ndarray | None = None) -> pd.Series:
    """A nullable boolean Series: missing where the comparison touched a missing value."""
    values = result.to_numpy(dtype=bool, na_value=False)
    mask = result.isna().to_numpy(dtype=bool)
    if nulls is not None:
        mask = mask | nulls
    return pd.Series(pd.arrays.BooleanArray(values, mask), index=result.index)


def _nulls(value: Value) -> np.ndarray | None:
    return value.isna().to_numpy(dtype=bool) if isinstance(value, pd.Series) else None


class _Compiler:
    """Turns a parsed expression into a function of the frame, node by node. Only the node types handled below
    exist in the language; anything else is refused before any data is touched."""

    def __init__(self, expr: str, columns: Sequence[str] | None):
        self.expr = expr
        self.lines = expr.split("\n")
        self.columns = list(columns) if columns is not None else None
        self.names: dict[str, int] = {}  # column → character position of its first use

    def position(self, node: ast.AST) -> int:
        """1-based character position of a node in the expression (ast counts UTF-8 bytes per line)."""
        line, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        before = sum(len(s) + 1 for s in self.lines[: line - 1])
        text = self.lines[line - 1] if line - 1 < len(self.lines) else ""
        return before + len(text.encode("utf-8")[:col].decode("utf-8", errors="ignore")) + 1

    def refuse(self, node: ast.AST, what: str) -> KDLensError:
        return KDLensError(f"{what} (at character {self.position(node)}) is not allowed in a filter")

    def describe(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.expr, node) or type(node).__name__

    def compile(self, node: ast.AST) -> _Fn:
        if isinstance(node, ast.Expression):
            return self.compile(node.body)
        if isinstance(node, ast.Constant):
            value = self.constant(node)
            return lambda frame: value
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.BoolOp):
            parts = [self.condition(v) for v in node.values]
            combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_

            def boolop(frame: pd.DataFrame) -> Value:
                out = parts[0](frame)
                for part in parts[1:]:
                    out = combine(out, part(frame))
                return out

            return boolop
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.BinOp):
            return self.arithmetic(node)
        raise self.refuse(node, _REFUSED.get(type(node), f"'{type(node).__name__}'"))

    def constant(self, node: ast.Constant) -> Value:
        value = node.value
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise self.refuse(node, f"the constant '{self.describe(node)}'")
        if isinstance(value, str) and "__" in value:
            raise self.refuse(node, "a string containing '__'")
        return value

    def name(self, node: ast.Name) -> _Fn:
        name = node.id
        if name.startswith("__"):
            raise self.refuse(node, f"the name '{name}'")
        if self.columns is not None and name not in self.columns:
            raise KDLensError(
                f"unknown column '{name}' at character {self.position(node)}; columns are {column_list(self.columns)}"
            )
        self.names.setdefault(name, self.position(node))
        return lambda frame: frame[name]

    def condition(self, node: ast.AST) -> _Fn:
        """A sub-expression used as true/false (operand of and/or/not, or the whole filter)."""
        inner, what = self.compile(node), self.describe(node)

        def as_condition(frame: pd.DataFrame) -> Value:
            return _as_condition(inner(frame), what)

        return as_condition

    def unary(self, node: ast.UnaryOp) -> _Fn:
        if isinstance(node.op, ast.Not):
            inner = self.condition(node.operand)

            def negate(frame: pd.DataFrame) -> Value:
                value = inner(frame)
                return (not value) if isinstance(value, bool) else ~value

            return negate
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            inner, what = self.compile(node.operand), self.describe(node.operand)
            sign = operator.neg if isinstance(node.op, ast.USub) else operator.pos
            return lambda frame: sign(_number(inner(frame), what))
        raise self.refuse(node, _SYMBOLS.get(type(node.op), f"'{type(node.op).__name__}'"))

    def arithmetic(self, node: ast.BinOp) -> _Fn:
        op = _ARITHMETIC.get(type(node.op))
        if op is None:
            raise self.refuse(node, _SYMBOLS.get(type(node.op), f"'{type(node.op).__name__}'"))
        left, right = self.compile(node.left), self.compile(node.right)
        lw, rw, where = self.describe(node.left), self.describe(node.right), self.position(node)

        def apply(frame: pd.DataFrame) -> Value:
            a, b = _number(left(frame), lw), _number(right(frame), rw)
            try:
                return op(a, b)
            except ZeroDivisionError:
                raise KDLensError(f"the filter divides by zero at character {where}") from None

        return apply

    def literal_items(self, node: ast.AST) -> list:
        """The constants of the list/tuple after 'in' (negative numbers allowed)."""
        if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise self.refuse(node, f"'{self.describe(node)}' after 'in' (give a list of values, e.g. gold in (1, 2))")
        items = []
        for element in node.elts:
            if (
                isinstance(element, ast.UnaryOp)
                and isinstance(element.op, ast.USub)
                and isinstance(element.operand, ast.Constant)
                and not isinstance(element.operand.value, bool)
                and isinstance(element.operand.value, (int, float))
            ):
                items.append(-element.operand.value)
            elif isinstance(element, ast.Constant):
                items.append(self.constant(element))
            else:
                raise self.refuse(element, f"'{self.describe(element)}' inside an 'in' list (only constants)")
        return items

    def compare(self, node: ast.Compare) -> _Fn:
        steps: list[_Fn] = []
        operands = [node.left, *node.comparators]
        lists = (ast.List, ast.Tuple, ast.Set)
        fns = [
            None
            if i > 0
            and isinstance(node.ops[i - 1], (ast.In, ast.NotIn))
            and isinstance(o, lists)
            and i == len(node.ops)
            else self.compile(o)
            for i, o in enumerate(operands)
        ]
        for i, op in enumerate(node.ops):
            left_node, right_node = operands[i], operands[i + 1]
            left, right = fns[i], fns[i + 1]
            where = self.position(left_node)
            if isinstance(op, (ast.In, ast.NotIn)):
                negate = isinstance(op, ast.NotIn)
                if (
                    isinstance(left_node, ast.Constant)
                    and isinstance(left_node.value, str)
                    and not isinstance(right_node, (ast.List, ast.Tuple, ast.Set))
                ):
                    steps.append(_substring_step(left_node.value, right, negate, self.describe(right_node)))
                else:
                    steps.append(_isin_step(left, self.literal_items(right_node), negate))
            elif isinstance(op, (ast.Is, ast.IsNot)):
                if not (isinstance(right_node, ast.Constant) and right_node.value is None):
                    raise self.refuse(node, "'is' with anything but None")
                steps.append(
                    _compare_step(
                        operator.eq if isinstance(op, ast.Is) else operator.ne,
                        left,
                        right,
                        self.describe(left_node),
                        self.describe(right_node),
                        where,
                    )
                )
            elif type(op) in _COMPARE:
                is_none = [isinstance(o, ast.Constant) and o.value is None for o in (left_node, right_node)]
                if any(is_none) and not isinstance(op, (ast.Eq, ast.NotEq)):
                    raise self.refuse(node, "ordering against None (use == None or != None)")
                steps.append(
                    _compare_step(
                        _COMPARE[type(op)], left, right, self.describe(left_node), self.describe(right_node), where
                    )
                )
            else:
                raise self.refuse(node, f"the comparison '{type(op).__name__}'")

        def chained(frame: pd.DataFrame) -> Value:
            out = steps[0](frame)
            for step in steps[1:]:
                out = out & step(frame)
            return out

        return chained


def _as_condition(value: Value, what: str) -> Value:
    """True/false per row, or one Python bool; anything else (a number column, a string) is refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, pd.Series):
        if pd.api.types.is_bool_dtype(value.dtype):
            return value if isinstance(value.dtype, pd.BooleanDtype) else _bool_series(value)
        if value.dtype == object:
            present = value.dropna()
            if all(isinstance(v, (bool, np.bool_)) for v in present):
                return _bool_series(value.where(value.notna(), False), value.isna().to_numpy(dtype=bool))
    raise KDLensError(f"'{what}' is not a true/false condition; compare it with a value (for example {what} > 0)")


def _number(value: Value, what: str) -> Value:
    if isinstance(value, pd.Series):
        if pd.api.types.is_numeric_dtype(value.dtype) and not pd.api.types.is_bool_dtype(value.dtype):
            return value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise KDLensError(f"arithmetic needs numbers, and '{what}' is not a number")


def _compare_step(op: Callable, left: _Fn, right: _Fn, lw: str, rw: str, where: int) -> _Fn:
    """One comparison. A missing value matches no comparison (SQL-style: `not (kl > 1)` leaves out rows without a
    KL too); `x == None` / `x != None` test for missing values."""

    def step(frame: pd.DataFrame) -> Value:
        a, b = left(frame), right(frame)
        if a is None or b is None:
            other = b if a is None else a
            if isinstance(other, pd.Series):
                missing = other.isna()
                return _bool_series(missing if op is operator.eq else ~missing)
            return op(a, b)
        try:
            result = op(a, b)
        except TypeError:
            raise KDLensError(
                f"cannot compare {lw} with {rw} at character {where}: their values are of different kinds"
            ) from None
        if isinstance(result, pd.Series):
            na, nb = _nulls(a), _nulls(b)
            nulls = na if nb is None else (nb if na is None else na | nb)
            return _bool_series(result, nulls)
        return bool(result)

    return step


def _isin_step(left: _Fn, items: list, negate: bool) -> _Fn:
    has_none = any(i is None for i in items)
    values = [i for i in items if i is not None]

    def step(frame: pd.DataFrame) -> Value:
        a = left(frame)
        if not isinstance(a, pd.Series):
            return (a in items) != negate
        hit = a.isin(values).to_numpy(dtype=bool)
        nulls = a.isna().to_numpy(dtype=bool)
        if has_none:
            hit, mask = hit | nulls, np.zeros_like(nulls)
        else:
            mask = nulls
        return pd.Series(pd.arrays.BooleanArray(hit != negate, mask), index=a.index)

    return step


def _substring_step(text: str, right: _Fn, negate: bool, what: str) -> _Fn:
    """`'x' in text`: the column's values contain the string."""

    def step(frame: pd.DataFrame) -> Value:
        b = right(frame)
        if isinstance(b, str):
            return (text in b) != negate
        if not isinstance(b, pd.Series) or (b.dtype != object and not pd.api.types.is_string_dtype(b.dtype)):
            raise KDLensError(f"'in' looks for text inside a text column, and '{what}' is not one")
        is_text = b.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        found = b.where(is_text, "").astype(str).str.contains(text, regex=False).to_numpy(dtype=bool)
        return pd.Series(pd.arrays.BooleanArray(found != negate, ~is_text), index=b.index)

    return step


@dataclass(frozen=True)
class RowFilter:
    """A parsed filter: call it on a frame for a boolean Series (True = row selected)."""

    expr: str
    columns: tuple[str, ...]  # the column names it reads
    positions: tuple[int, ...]  # where each is first used (1-based character)
    fn: _Fn = field(repr=False, compare=False)

    def __call__(self, frame: pd.DataFrame) -> pd.Series:
        for name, where in zip(self.columns, self.positions):
            if name not in frame.columns:
                raise KDLensError(
                    f"unknown column '{name}' at character {where}; columns are {column_list(frame.columns)}"
                )
        try:
            value = _as_condition(self.fn(frame), self.expr)
        except KDLensError:
            raise
        except RecursionError:
            raise KDLensError("the filter is nested too deeply to apply") from None
        except (TypeError, ValueError, ArithmeticError) as e:
            raise KDLensError(f"the filter '{self.expr}' could not be applied ({e})") from None
        if isinstance(value, bool):
            return pd.Series(value, index=frame.index, dtype=bool)
        return value.fillna(False).astype(bool)


MAX_FILTER_DEPTH = 100  # nested operations in one filter


def _depth(tree: ast.AST) -> int:
    """The deepest nesting of the syntax tree, walked without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return deepest


def parse_filter(expr: str, columns: Iterable[str] | None = None) -> RowFilter:
    """Parse a row filter such as `kl > 0.5 and gold in (1, 2) and not teacher_correct`.

    The language is a small subset of Python expressions, evaluated by walking its syntax tree (never `eval`):
    column names, number/string/True/False/None constants, comparisons (chained too), `in`/`not in` a list of
    constants, `'word' in text`, `and`/`or`/`not`, parentheses, unary minus and + - * / on numbers. Missing
    values match no comparison except `== None`. With `columns`, unknown names are refused here rather than
    when the filter is applied."""
    if not isinstance(expr, str):
        raise KDLensError("a filter must be text")
    text = expr.strip()
    if not text:
        raise KDLensError("the filter is empty")
    if len(text) > MAX_FILTER_CHARS:
        raise KDLensError(f"the filter is longer than {MAX_FILTER_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise KDLensError(f"the filter is not a valid expression at character {e.offset or 1} ({e.msg})") from None
    except (RecursionError, MemoryError, ValueError):
        raise KDLensError("the filter is nested too deeply to read") from None
    if _depth(tree) > MAX_FILTER_DEPTH:  # explicit, so the refusal never depends on the caller's stack depth
        raise KDLensError("the filter is nested too deeply to read")
    compiler = _Compiler(text, columns)
    try:
        fn = compiler.compile(tree)
    except RecursionError:
        raise KDLensError("the filter is nested too deeply to read") from None
    return RowFilter(text, tuple(compiler.names), tuple(compiler.names.values()), fn)


def select_examples(
    frame: pd.DataFrame,
    expr: str | None = None,
    *,
    sort_by: str | None = None,
    descending: bool = True,
    limit: int | None = None,
) -> pd.DataFrame:
    """The rows a filter selects, sorted by a column (missing values last), at most `limit` of them."""
    out = frame[parse_filter(expr)(frame).to_numpy()] if expr and expr.strip() else frame
    if sort_by is not None:
        if sort_by not in frame.columns:
            raise KDLensError(f"cannot sort by unknown column '{sort_by}'; columns are {column_list(frame.columns)}")
        out = out.sort_values(sort_by, ascending=not descending, na_position="last", kind="stable")
    return out.head(limit) if limit is not None else out
