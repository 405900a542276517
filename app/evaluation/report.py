"""The evaluation written out: JSON for machines, Markdown for people, a PNG chart."""

import json
from dataclasses import asdict
from pathlib import Path

from app.evaluation.corpus import Protocol
from app.evaluation.runner import METHODS, Evaluation

COLUMNS = [
    ("p_at_1", "P@1"),
    ("p_at_5", "P@5"),
    ("p_at_10", "P@10"),
    ("mrr_at_10", "MRR@10"),
    ("ndcg_at_10", "nDCG@10"),
    ("duplicate_rate", "lists with a duplicate"),
]


def markdown(evaluation: Evaluation, protocol: Protocol, command: str) -> str:
    lines = [
        f"# {evaluation.corpus}",
        "",
        f"{evaluation.articles} articles, {evaluation.queries} asked about, "
        f"model {evaluation.model}. Protocol: {protocol}.",
        *(
            [f"Not ingested, as they repeat the label: {', '.join(evaluation.withheld)}."]
            if evaluation.withheld
            else []
        ),
        "",
        f"Reproduce: `{command}`",
        "",
        "| method | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for method, scores in evaluation.scores.items():
        values = " | ".join(f"{getattr(scores, key):.3f}" for key, _ in COLUMNS)
        lines.append(f"| {method} | {values} |")
    lines += ["", *(f"* **{m}**: {what}" for m, what in METHODS.items())]
    return "\n".join(lines) + "\n"


def chart(evaluation: Evaluation, path: Path) -> None:
    try:
        import matplotlib
    except ModuleNotFoundError as missing:  # the service's own install has no chart library
        raise RuntimeError(
            "the report's chart needs matplotlib, the eval extra: pip install -e '.[eval]'"
        ) from missing

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    ks = [("p_at_1", 1), ("p_at_5", 5), ("p_at_10", 10)]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for method, scores in evaluation.scores.items():
        ax.plot(
            [k for _, k in ks], [getattr(scores, key) for key, _ in ks], marker="o", label=method
        )
    ax.set_xticks([1, 5, 10])
    ax.set_xlabel("k")
    ax.set_ylabel("precision@k")
    ax.set_title(f"{evaluation.corpus}: precision@k per method")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_reports(
    evaluation: Evaluation, protocol: Protocol, out_dir: Path, command: str
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / evaluation.corpus
    payload = {
        "corpus": evaluation.corpus,
        "articles": evaluation.articles,
        "queries": evaluation.queries,
        "model": evaluation.model,
        "protocol": asdict(protocol),
        "command": command,
        "scores": {m: asdict(s) for m, s in evaluation.scores.items()},
    }
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".png")]
    paths[0].write_text(json.dumps(payload, indent=2) + "\n")
    paths[1].write_text(markdown(evaluation, protocol, command))
    chart(evaluation, paths[2])
    return paths
