#!/usr/bin/env python3
"""The paper's Table VII from finished `scripts/voc-job.sh` runs, as the README prints it.

    python3 scripts/voc-table.py runs/voc-*          # one run folder per (variant, seed)
    python3 scripts/voc-table.py --per-class runs/voc-*   # then IoU per scored class, by variant,
                                                          # and where each class's pixels went

Each run folder needs `cam/config.json` (variant and seed), `eval-cams.json` (CAM seeds) and,
once the job got that far, `ir-labels.txt` and `eval-pseudo.json`. It prints one row per run
and, for a variant with more than one seed, its mean ± sample standard deviation (n - 1).
What a run lacks is listed on stderr; each mean covers only the runs that have that value.
"""

import json
import re
import statistics
import sys
from pathlib import Path

# Table VII's row order.
NAMES = {
    "baseline": "baseline (plain CAM)",
    "drs": "+ DRS",
    "drs_cdr": "+ DRS + CDR",
    "drs_cdr_asm_noras": "+ DRS + CDR + ASM without RAS",
    "full": "full SSC",
}
ORDER = list(NAMES)


def load(run: Path):
    try:
        cfg = json.loads((run / "cam" / "config.json").read_text())
        cams = json.loads((run / "eval-cams.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"{run}: skipped, no classifier config or seed evaluation ({e})", file=sys.stderr)
        return None
    row = {
        "variant": cfg["variant"],
        "seed": cfg["seed"],
        "seed21": 100 * cams["best"]["miou"],
        "seed9": 100 * cams["subset_miou_at_best"],
        "thr": cams["best"]["threshold"],
        "covered": 100 * cams["object_coverage_at_best"],
        "spilled": 100 * cams["background_spill_at_best"],
        "seed_classes": per_class(cams["classes"], cams["per_class_iou_at_best"], cams["subset"]),
    }
    try:
        text = (run / "ir-labels.txt").read_text()
        row["ir"] = float(re.search(r"precision ([0-9.]+) %", text).group(1))
    except (OSError, AttributeError):
        print(f"{run}: no IR-label precision yet", file=sys.stderr)
    try:
        pseudo = json.loads((run / "eval-pseudo.json").read_text())
        row["pseudo21"] = 100 * pseudo["miou"]
        row["pseudo9"] = 100 * pseudo["subset_miou"]
        row["pseudo_classes"] = per_class(pseudo["class_names"], pseudo["per_class_iou"], pseudo["subset"])
        row["confusion"] = (pseudo["class_names"], pseudo["subset"], pseudo["confusion"])
    except (OSError, json.JSONDecodeError):
        print(f"{run}: no pseudo-mask evaluation yet", file=sys.stderr)
    return row


def per_class(names, ious, subset):
    iou = dict(zip(names, ious))
    return {n: 100 * iou[n] for n in subset if iou[n] is not None}


def per_class_table(rows, key, title):
    classes = list(dict.fromkeys(c for r in rows if key in r for c in r[key]))
    print(f"\n{title}, IoU % per class (mean over the variant's seeds)\n")
    print("| classifier | seeds | " + " | ".join(classes) + " |")
    print("|---|---|" + "---|" * len(classes))
    for variant in dict.fromkeys(r["variant"] for r in rows):
        group = [r[key] for r in rows if r["variant"] == variant and key in r]
        if group:
            means = [statistics.mean(g[c] for g in group if c in g) for c in classes]
            print(f"| {NAMES.get(variant, variant)} | {len(group)} | "
                  + " | ".join(f"{m:.1f}" for m in means) + " |")


def confusion_table(rows):
    """Where each scored class's ground-truth pixels went in the pseudo-masks, summed over seeds."""
    print("\nPseudo-masks: what the ground-truth pixels of each class were labelled "
          "(the three largest shares, summed over the variant's seeds)\n")
    print("| classifier | ground truth | labelled as |")
    print("|---|---|---|")
    for variant in dict.fromkeys(r["variant"] for r in rows):
        group = [r["confusion"] for r in rows if r["variant"] == variant and "confusion" in r]
        if not group:
            continue
        names, subset = group[0][0], group[0][1]
        for cls in subset:
            i = names.index(cls)
            counts = [sum(g[2][i][j] for g in group) for j in range(len(names))]
            total = sum(counts) or 1
            top = sorted(range(len(names)), key=lambda j: -counts[j])[:3]
            shares = ", ".join(f"{names[j]} {100 * counts[j] / total:.1f} %" for j in top)
            print(f"| {NAMES.get(variant, variant)} ({len(group)}) | {cls} | {shares} |")


def cell(rows, key):
    values = [r[key] for r in rows if key in r]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f} %"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} %"


def main():
    args = sys.argv[1:]
    classes = "--per-class" in args
    runs = [Path(p) for p in args if p != "--per-class"]
    if not runs:
        sys.exit(__doc__)
    rows = [r for r in map(load, runs) if r]
    if not rows:
        sys.exit("no finished run among the folders given (each needs cam/config.json and eval-cams.json)")
    rows.sort(key=lambda r: (ORDER.index(r["variant"]) if r["variant"] in ORDER else 99, r["seed"]))
    print("| classifier | seed | CAM seeds, 21 / 9 classes | best threshold | covered / spilled "
          "| IR-label precision | pseudo-masks, 21 / 9 classes |")
    print("|---|---|---|---|---|---|---|")
    for variant in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == variant]
        for r in group:
            print(f"| {NAMES.get(variant, variant)} | {r['seed']} | {cell([r], 'seed21')} / "
                  f"{cell([r], 'seed9')} | {r['thr']:.2f} | {r['covered']:.1f} % / "
                  f"{r['spilled']:.1f} % | {cell([r], 'ir')} | {cell([r], 'pseudo21')} / "
                  f"{cell([r], 'pseudo9')} |")
        if len(group) > 1:
            print(f"| {NAMES.get(variant, variant)} | mean ± sd of {len(group)} | "
                  f"{cell(group, 'seed21')} / {cell(group, 'seed9')} | | "
                  f"{cell(group, 'covered')} / {cell(group, 'spilled')} | {cell(group, 'ir')} | "
                  f"{cell(group, 'pseudo21')} / {cell(group, 'pseudo9')} |")
    if classes:
        per_class_table(rows, "seed_classes", "CAM seeds at the best threshold")
        per_class_table(rows, "pseudo_classes", "Pseudo-masks")
        confusion_table(rows)


if __name__ == "__main__":
    main()
