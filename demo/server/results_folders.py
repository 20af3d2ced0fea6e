"""Where the ablation studies' results are read: a results folder and its siblings at other budgets.

Both the Ablations tab (the studies) and the model registry (the arms' kept models) read this family of folders.
"""

from __future__ import annotations

from pathlib import Path

PREFERRED_ORDER = ["heads", "depth", "baseline", "residual", "norm", "posemb"]


def sources(directory: Path) -> list[Path]:
    """Where results are read: ``directory`` and its siblings named ``<its name>-<something>`` (such as
    ``ablations-2000``, the same studies at another budget), the siblings first, the longest budget first."""
    directory = Path(directory)

    def budget(path: Path):  # ablations-2000 before ablations-600: the longest budget first
        suffix = path.name[len(directory.name) + 1:]
        return (0, -int(suffix), "") if suffix.isdigit() else (1, 0, suffix)
    try:
        siblings = sorted((p for p in directory.parent.glob(f"{directory.name}-*") if p.is_dir()), key=budget)
    except OSError:
        siblings = []
    return [*siblings, directory]


def _studies_in(directory: Path) -> list[str]:
    try:
        # <study>.json; not <study>.step_cost.json and the like (study names have no dots)
        names = [p.stem for p in Path(directory).glob("*.json") if p.is_file() and "." not in p.stem]
    except OSError:
        return []
    rank = {n: i for i, n in enumerate(PREFERRED_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def list_studies(directory: Path) -> list[str]:
    """Study names with a results file, the original write-up's two tables (heads, depth) first. Studies of a sibling
    directory (another budget) come first, as ``<sibling>/<study>``; those of ``directory`` are bare names."""
    out = []
    for source in sources(directory):
        prefix = "" if source == Path(directory) else f"{source.name}/"
        out += [prefix + name for name in _studies_in(source)]
    return out


def checked_study(directory: Path, study: str | None) -> tuple[Path, str]:
    """(directory, study name) of a picker value that names a study listed here; a ValueError naming the
    choices otherwise (a visitor or API caller may send anything)."""
    studies = list_studies(directory)
    if study not in studies:
        raise ValueError(f"no results for study {study!r:.80}; available: {', '.join(studies) or 'none'}")
    return locate(directory, study)


def locate(directory: Path, study: str) -> tuple[Path, str]:
    """(directory, study name) of a picker value: ``heads`` or ``ablations-2000/heads``."""
    source, _, name = study.rpartition("/")
    return (Path(directory).parent / source if source else Path(directory)), name
