#!/usr/bin/env python3
"""Writes BENCHMARKS.md and its plots from loadtest/results/*.json (see loadtest/run).

Every number in a table comes from one run of loadtest/run, where the targets were measured
side by side; ratios are what to compare, not absolute times across runs.
"""
import datetime
import json
import os
import platform
import subprocess

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
RES = os.path.join(ROOT, "loadtest", "results")
PLOTS = os.path.join(ROOT, "loadtest", "results")


def load(name):
    path = os.path.join(RES, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def us(v):
    return "–" if v is None else f"{v:.1f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} × {cpu}, {platform.system()} {platform.release()}"


def commit():
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    except Exception:
        return "unknown"


def s1(out, name="s1-latency.json", title="## 1. Added latency, non-streaming, concurrency 1\n"):
    r = load(name)
    if not r:
        return None
    t = {x["name"]: x for x in r["targets"]}
    floor = t.get("floor")
    out.append(title)
    out.append(f"{r['duration_s']} s per target, interleaved request by request, {r['prompt_bytes']}-byte prompt. "
               "`added` is the difference from direct at the same percentile; `× floor` is the added p50 "
               "over the bare Pingora proxy's added p50 (the goal is at most 1.25).\n")
    out.append("| target | requests | errors | p50 µs | p99 µs | added p50 µs | added p99 µs | × floor (added p50) | CPU ms / 1k req |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for x in r["targets"]:
        out.append(f"| {x['name']} | {x['requests']} | {x['errors']} | {us(x['total']['p50_us'])} | {us(x['total']['p99_us'])} | "
                   f"{us(x['added_p50_us'])} | {us(x['added_p99_us'])} | "
                   f"{ratio(x['added_p50_us'], floor and floor['added_p50_us']) if x['name'] not in ('direct',) else '–'} | "
                   f"{us(x.get('cpu_ms_per_1000'))} |")
    out.append("")
    return r


def s2(out):
    r = load("s2-stream.json")
    if not r:
        return None
    out.append("## 2. Streaming, Anthropic upstream translated to OpenAI, concurrency 1\n")
    out.append("16 chunks 2 ms apart. Direct and floor read the Anthropic stream as it is; Junction's client "
               "reads it translated to OpenAI chunks. TTFT is the time to the first token (the first event "
               "with text: an opening event such as `message_start` or a role chunk carries none, and Junction holds "
               "those back until the first token so that an error before it can still fail over); a gap is "
               "the time between two events (the goal: none added).\n")
    out.append("| target | streams | errors | TTFT p50 µs | TTFT p99 µs | added TTFT p50 µs | added TTFT p99 µs | gap p50 µs | gap p99 µs |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for x in r["targets"]:
        if x["requests"] == 0:
            out.append(f"| {x['name']} | 0 | {x['errors']} | could not stream this (every request failed) | | | | | |")
            continue
        ttft, gap = x.get("ttft") or {}, x.get("gap") or {}
        out.append(f"| {x['name']} | {x['requests']} | {x['errors']} | {us(ttft.get('p50_us'))} | {us(ttft.get('p99_us'))} | "
                   f"{us(x.get('added_ttft_p50_us'))} | {us(x.get('added_ttft_p99_us'))} | {us(gap.get('p50_us'))} | {us(gap.get('p99_us'))} |")
    out.append("")
    return r


def s3(out):
    r = load("s3-ramp.json")
    if not r:
        return None
    out.append("## 3. Open-loop ramp\n")
    out.append(f"Constant-rate load, {r['step_s']} s per step and target (targets in shuffled order at each "
               "step), latency from each request's scheduled send time, so queueing shows. A target leaves the "
               "ramp after its first step with an error or p99 over 100 ms.\n")
    out.append("| target | highest rate, 100% ok and p99 < 100 ms | highest rate, p99 < 5 ms | CPU ms / 1k req at that rate |")
    out.append("|---|---|---|---|")
    for name in r["targets"]:
        best100, best5, cpu = None, None, None
        for step in r["steps"]:
            x = step["targets"].get(name)
            if not x:
                continue
            p99 = x["latency"]["p99_us"]
            ok = x["errors"] == 0 and p99 is not None
            if ok and p99 < 100_000:
                best100, cpu = step["rate"], x.get("cpu_ms_per_1000")
            if ok and p99 < 5_000:
                best5 = step["rate"]
        out.append(f"| {name} | {best100 or '–'} /s | {best5 or '–'} /s | {us(cpu)} |")
    out.append("")
    return r


def s4(out):
    r = load("s4-streams.json")
    if not r:
        return None
    out.append("## 4. Concurrent slow streams through Junction\n")
    gap = r.get("gap") or {}
    out.append(f"{r['streams']} concurrent streams, {r['chunks_per_stream']} chunks {r['chunk_delay_ms']} ms apart "
               "(upstream over h2c). The goal: under 250 MB RSS, no stream stalled.\n")
    out.append("| streams | completed | errors | peak RSS MB | CPU s | gap p50 ms | gap p99 ms | gap max ms |")
    out.append("|---|---|---|---|---|---|---|---|")
    ms = lambda v: "–" if v is None else f"{v / 1000:.1f}"
    out.append(f"| {r['streams']} | {r['completed']} | {r['errors']} | {r['peak_rss_mb']} | {r['cpu_s']} | "
               f"{ms(gap.get('p50_us'))} | {ms(gap.get('p99_us'))} | {ms(gap.get('max_us'))} |")
    out.append("")
    return r


def plots(r1, r3, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        out.append("_(plots not drawn: matplotlib is missing)_\n")
        return
    if r1:
        fig, ax = plt.subplots(figsize=(7, 4))
        for x in r1["targets"]:
            c = x["cdf_us"]
            if c:
                ax.plot(c, [i / (len(c) - 1) for i in range(len(c))], label=x["name"])
        ax.set_xscale("log")
        ax.set_xlabel("latency (µs, log)")
        ax.set_ylabel("fraction of requests")
        ax.set_title("Non-streaming latency, concurrency 1")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(PLOTS, "latency-cdf.png"), dpi=110)
        out.append("![latency CDF](loadtest/results/latency-cdf.png)\n")
    if r3:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name in r3["targets"]:
            pts = [(s["rate"], s["targets"][name]["latency"]["p99_us"]) for s in r3["steps"]
                   if name in s["targets"] and s["targets"][name]["latency"]["p99_us"] is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] / 1000 for p in pts], marker="o", label=name)
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (requests/s)")
        ax.set_ylabel("p99 latency (ms, log)")
        ax.axhline(100, color="grey", linestyle="--", linewidth=0.8)
        ax.axhline(5, color="grey", linestyle=":", linewidth=0.8)
        ax.set_title("Open-loop ramp: rate vs p99")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(PLOTS, "rate-p99.png"), dpi=110)
        out.append("![rate vs p99](loadtest/results/rate-p99.png)\n")


def main():
    out = ["# Benchmarks\n",
           f"Generated by `loadtest/run` on {datetime.date.today()} at commit `{commit()}`; machine: {machine()}. "
           "Everything ran on 127.0.0.1 in one run: the mock upstream (`junction mock`, 1 thread), the bare "
           "Pingora pass-through proxy (`junction-floor`, 1 thread: Pingora's own cost, no logic), Junction "
           "(1 worker thread, access log and ledger on) and the peers that could be installed. The machine is "
           "shared and noisy: compare the ratios within a table, not absolute numbers across runs.\n",
           "Rerun: `loadtest/run` (about 10 minutes; `--quick` for a short pass, `--no-peers` to skip the "
           "peers, `--only 1,2` for some scenarios). Raw results: `loadtest/results/*.json`.\n"]
    base = os.environ.get("JUNCTION_BASELINE")
    if base:
        out.append(f"`baseline` (scenarios 1 and 2) is an older Junction binary run beside the current one "
                   f"(`JUNCTION_BASELINE={os.path.basename(base)}`, same config, own ports): before and "
                   "after a change, in one run.\n")
    r1 = s1(out)
    s1(out, "s1-peers.json", "### 1b. The same run with the peers in the loop\n\nThe peers' slowness leaves every "
       "target fewer samples here; the table above, without them, is the one to read for Junction against the floor.\n")
    s2(out)
    r3 = s3(out)
    s4(out)
    peers = load("peers.json")
    if peers:
        out.append("## Peers\n")
        for p in peers:
            out.append(f"- **{p['name']}**: {p['status']}")
        out.append("")
    plots(r1, r3, out)
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
        f.write("\n".join(out))
    print("BENCHMARKS.md written")


if __name__ == "__main__":
    main()
