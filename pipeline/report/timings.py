"""Where the time went: the stages' timing files (pipeline.core.timing records under
paths.timings, one per stage or cell) as the report's closing table, with the machine."""
from __future__ import annotations

import json
from pathlib import Path


def read(root: Path) -> list[dict]:
    """Every timing record under `root` (none: []); unreadable files are left out, and so are
    the cell records (`root`/STAGE/CELL.json) of a stage that has a whole-stage record
    (`root`/STAGE.json): those are one cell run by hand, or an earlier layout's cells, not
    part of the stage's run."""
    out = []
    for f in sorted(root.rglob("*.json")) if root.is_dir() else []:
        try:
            record = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and "stage" in record and "wall_seconds" in record:
            out.append(record)
    whole = {r["stage"] for r in out if r.get("cell") is None}
    return [r for r in out if r.get("cell") is None or r["stage"] not in whole]


def machine(m: dict) -> str:
    """`AMD EPYC, 2 cores; ISA: AVX2 (no AVX-512, no bf16, no AMX); no GPU`."""
    isa = m.get("isa") or {}
    if isa.get("amx_bf16") or isa.get("amx_tile"):
        kind = "AMX"
    elif isa.get("avx512_bf16"):
        kind = "AVX512-BF16"
    elif isa.get("avx512f"):
        kind = "AVX-512 (no bf16)"
    elif isa.get("avx2"):
        kind = "AVX2 (no AVX-512, no bf16, no AMX)"
    else:
        kind = "unknown"
    if m.get("isa_cap"):  # an AVX-512 CPU standing in for an AVX2 one
        kind += f", capped by {m['isa_cap']}"
    gpu = m.get("gpu")
    gpu_text = f"GPU {gpu.get('name', '?')}" if isinstance(gpu, dict) else "no GPU"
    return f"{m.get('cpu', '?')}, {m.get('usable_cores', m.get('cores', '?'))} cores; ISA: {kind}; {gpu_text}"


def table(records: list[dict]) -> str:
    """Per stage: cells, wall and CPU seconds of the commands (summed over cells), the cores
    kept busy, the processes' start-up before their commands (interpreter and imports) and
    the largest peak memory of one process (the stage's own or a worker's: a pooled stage's
    workers hold the models); then the total. The report's own stage is left out (it is running)."""
    by_stage: dict[str, list[dict]] = {}
    for r in records:
        if r["stage"] != "report":
            by_stage.setdefault(r["stage"], []).append(r)
    lines = ["| stage | cells | wall s | CPU s | cores busy | start-up s | peak memory MiB |",
             "|---|---|---|---|---|---|---|"]
    total_wall = total_cpu = total_start = 0.0
    for stage, rs in sorted(by_stage.items(), key=lambda kv: -sum(r["wall_seconds"] for r in kv[1])):
        wall = sum(r["wall_seconds"] for r in rs)
        cpu = sum(r.get("cpu_seconds", 0.0) for r in rs)
        start = sum(r.get("startup_seconds") or 0.0 for r in rs)
        peak = max(max(r.get("peak_rss_mib", 0.0), r.get("children_peak_rss_mib", 0.0)) for r in rs)
        total_wall, total_cpu, total_start = total_wall + wall, total_cpu + cpu, total_start + start
        lines.append(f"| {stage} | {len(rs)} | {wall:.0f} | {cpu:.0f} | "
                     f"{cpu / wall if wall else 0:.1f} | {start:.0f} | {peak:.0f} |")
    lines.append(f"| **total** | {sum(map(len, by_stage.values()))} | **{total_wall:.0f}** "
                 f"({total_wall / 60:.1f} min) | {total_cpu:.0f} | "
                 f"{total_cpu / total_wall if total_wall else 0:.1f} | {total_start:.0f} | |")
    return "\n".join(lines)


GAP = 60.0  # seconds between one command's end and the next one's start: longer is another run


def span(records: list[dict]) -> dict | None:
    """The last unbroken run of commands (each started within GAP seconds of the one before
    ending): their number, the seconds from the first process's start to the last command's
    end, and how many of those went between the processes (DVC's bookkeeping); None when the
    records carry no clock times. Stages DVC skipped (unchanged) ran in earlier runs."""
    timed = sorted((r for r in records if r.get("started_at") and r.get("ended_at")
                    and r["stage"] != "report"), key=lambda r: r["started_at"])
    if not timed:
        return None
    run = [timed[0]]
    for r in timed[1:]:
        if r["started_at"] - max(x["ended_at"] for x in run) > GAP:
            run = [r]  # a gap: an earlier run ends there
        else:
            run.append(r)
    seconds = max(r["ended_at"] for r in run) - run[0]["started_at"]
    inside = sum((r.get("startup_seconds") or 0.0) + r["wall_seconds"] for r in run)
    return {"commands": len(run), "seconds": seconds, "between": max(0.0, seconds - inside)}


def section(records: list[dict], root: Path) -> list[str]:
    """The report's last section; nothing without records."""
    if not records:
        return []
    machines = sorted({machine(r.get("machine") or {}) for r in records})
    out = ["## Where the time went", "",
           (f"Each stage's own command, from `{root}`, sorted by wall time; start-up is each "
            "process's life before its command (the interpreter and imports: torch alone takes "
            "~2 s). Machine: " + "; ".join(machines) + "."), "", table(records), ""]
    s = span(records)
    if s is not None and s["commands"] > 1:
        out += [f"The last unbroken run of {s['commands']} commands took **{s['seconds']:.0f} s "
                f"({s['seconds'] / 60:.1f} min)** from the first process's start to the last "
                f"command's end, the report's own stage not counted; {s['between']:.0f} s of it "
                "went between the processes (DVC checking and caching outputs). Stages DVC found "
                "up to date are not in it.", ""]
    return out
