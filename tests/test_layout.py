"""The package's shape: no import circle, and no module importing from a layer above its own.

Every import counts, including those inside functions (a function-local import is still a dependency,
only a hidden one)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gptcore"

# lower layers first; a module may import from its own layer or below, never above
LAYERS = [
    {"gptcore.errors", "gptcore.bounded"},
    {"gptcore.config"},
    {"gptcore.storage", "gptcore.device", "gptcore.presets", "gptcore.memory"},
    {"gptcore.tokenizers", "gptcore.models"},
    {"gptcore.shards"},
    {"gptcore.data", "gptcore.evaluate", "gptcore.inference", "gptcore.prepare", "gptcore.interpret"},
    {"gptcore.checkpoint"},
    {"gptcore.training", "gptcore.interop"},
    {"gptcore.experiments"},
    {"gptcore.cli", "gptcore.__main__"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every gptcore module ``path`` imports, anywhere in the file, resolved to a module name."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gptcore")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("gptcore"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}  # `from . import x` names a module
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules} - {name}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def layer_of(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in layer):
            return i
    if module == "gptcore":
        return 0
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_there_is_no_import_circle():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_module_imports_from_a_higher_layer():
    wrong = [f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
             for m, deps in graph().items() for d in deps
             if layer_of(d) > layer_of(m) and not (m == "gptcore" or d.startswith(m + "."))]
    assert not wrong, "\n".join(wrong)


def test_the_checks_can_fail():
    """The cycle finder finds a planted circle, and the import reader sees function-local imports."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert "gptcore.experiments.bench" in imports_of(PACKAGE / "cli.py")  # imported inside cmd_bench


@pytest.mark.parametrize("module", ["gptcore.models.gpt", "gptcore.inference.sampling", "gptcore.checkpoint"])
def test_attention_and_masks_are_written_once(module):
    """Only models/attention.py computes attention scores or builds the causal mask."""
    path = PACKAGE / (module.replace("gptcore.", "").replace(".", "/") + ".py")
    source = path.read_text()
    for marker in ("scaled_dot_product_attention", ".tril(", ".triu(", "tril_(", "triu_(", "softmax(-1) @"):
        assert marker not in source, f"{module} computes attention itself ({marker})"
