"""Prints the Markdown table of README.md from the config.yaml / metrics.json of every run in this folder."""

import json
import pathlib
import yaml

root = pathlib.Path(__file__).resolve().parent
lines = [
    "| run | gradient | projection | lr | lam | memory | weight decay | augment | start | test R@1 | best epoch |",
    "|" + "---|" * 11,
]
for d in sorted(root.iterdir()):
    if not (d / "metrics.json").exists():
        continue
    c, m = yaml.safe_load((d / "config.yaml").read_text()), json.loads((d / "metrics.json").read_text())
    me, mo, da, tr = c["method"], c["model"], c["data"], c["train"]
    lines.append(
        f"| {d.name} | {me['gradient']} | {me['projection']} | {tr['learning_rate']:g} | "
        f"{me.get('lam', '') if me['gradient'] == 'blackbox' else '—'} | {mo['memory_batches']} | {mo['weight_decay']:g} | "
        f"{'yes' if da.get('augment') else 'no'} | {'pretrained' if mo.get('weights') else 'random'} | "
        f"{100 * m['test']['recall_at_1']:.1f} | {m['best_epoch']} |"
    )
print("\n".join(lines))
