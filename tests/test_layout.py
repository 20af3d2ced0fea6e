"""The packages' shape: no import circle, and no module importing from a layer above its own (gptcore's
layers, and the app's: server, views, tabs, app); no tab of the app imports another.

Every import counts, including those inside functions (a function-local import is still a dependency,
only a hidden one)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gptcore"
APP = PACKAGE.parent / "demo"

# lower layers first; a module may import from its own layer or below, never above
LAYERS = [
    {"gptcore.errors", "gptcore.bounded"},
    {"gptcore.config"},
    {"gptcore.storage", "gptcore.device", "gptcore.presets", "gptcore.memory"},
    {"gptcore.tokenizers", "gptcore.models", "gptcore.head_roles"},
    {"gptcore.shards"},
    {"gptcore.data", "gptcore.evaluate", "gptcore.inference", "gptcore.prepare", "gptcore.interpret",
     "gptcore.snapshots"},
    {"gptcore.checkpoint"},
    {"gptcore.training", "gptcore.interop"},
    {"gptcore.experiments"},
    {"gptcore.cli", "gptcore.__main__"},
]
APP_LAYERS = [{"demo.server"}, {"demo.views"}, {"demo.tabs"}, {"demo.app"}]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)  # both packages sit in the repository
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, package_dir: Path = PACKAGE) -> set[str]:
    """Every module of ``package_dir``'s package that ``path`` imports, anywhere in the file, resolved to a
    module name."""
    top = package_dir.name
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(top)}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith(top):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}  # `from . import x` names a module
    modules = {module_name(p) for p in package_dir.rglob("*.py")}
    return {m for m in found if m in modules} - {name}


def graph(package_dir: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(p): imports_of(p, package_dir) for p in package_dir.rglob("*.py")}


def layer_of(module: str, layers: list[set[str]] = LAYERS) -> int:
    for i, layer in enumerate(layers):
        if any(module == top or module.startswith(top + ".") for top in layer):
            return i
    if "." not in module:  # the package itself
        return 0
    raise AssertionError(f"{module} belongs to no layer: add it to the layers")


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


@pytest.mark.parametrize("package_dir", [PACKAGE, APP], ids=["gptcore", "demo"])
def test_there_is_no_import_circle(package_dir):
    cycle = find_cycle(graph(package_dir))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("package_dir, layers", [(PACKAGE, LAYERS), (APP, APP_LAYERS)], ids=["gptcore", "demo"])
def test_no_module_imports_from_a_higher_layer(package_dir, layers):
    wrong = [f"{m} (layer {layer_of(m, layers)}) imports {d} (layer {layer_of(d, layers)})"
             for m, deps in graph(package_dir).items() for d in deps
             if layer_of(d, layers) > layer_of(m, layers) and not ("." not in m or d.startswith(m + "."))]
    assert not wrong, "\n".join(wrong)


def test_no_tab_imports_another():
    """A tab is a room of its own: what two tabs share lives in views/ or server/."""
    tabs = {m for m in graph(APP) if m.startswith("demo.tabs.")}
    wrong = [f"{m} imports {d}" for m in tabs for d in imports_of(APP / "tabs" / (m.rpartition(".")[2] + ".py"), APP)
             if d in tabs]
    assert not wrong, "\n".join(wrong)


def test_the_checks_can_fail():
    """The cycle finder finds a planted circle, and the import reader sees function-local imports."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert "gptcore.experiments.bench" in imports_of(PACKAGE / "cli.py")  # imported inside cmd_bench
    assert "demo.server.gpu" in imports_of(APP / "server" / "sessions.py", APP)  # a relative import


MASK_MARKERS = (".tril(", ".triu(", "tril_(", "triu_(", "[None, :] >", "[None, :] <")


def _source(module: str) -> str:
    return (PACKAGE / (module.replace("gptcore.", "").replace(".", "/") + ".py")).read_text()


@pytest.mark.parametrize("module", ["gptcore.models.gpt", "gptcore.inference.sampling", "gptcore.checkpoint"])
def test_attention_is_written_once(module):
    """Only models/attention.py (and flash.py, the tiled path) computes attention scores."""
    for marker in ("scaled_dot_product_attention", "softmax(-1) @"):
        assert marker not in _source(module), f"{module} computes attention itself ({marker})"


@pytest.mark.parametrize("module", ["gptcore.models.gpt", "gptcore.inference.sampling", "gptcore.checkpoint",
                                    "gptcore.models.attention", "gptcore.models.flash"])
def test_the_causal_rule_is_written_once(module):
    """Only models/causal.py says which keys a query may see; the others call it."""
    for marker in MASK_MARKERS:
        assert marker not in _source(module), f"{module} writes the causal rule itself ({marker})"
    assert any(marker in _source("gptcore.models.causal") for marker in MASK_MARKERS)
