"""Prints bench.sh's table: per figure the median over rounds for SPIRE and Signet, the range
when there was more than one round, and how many times better Signet is.

    python3 bench_table.py <results.txt> <scale sizes...>

results.txt lines: "<impl> <round> <name> <value> <unit>".
"""

import statistics
import sys
from collections import defaultdict

# (name, label, lower is better)
MAIN = [
    ("propagation_p50", "entry created → watching workload has it, p50", True),
    ("propagation_p99", "entry created → watching workload has it, p99 (10 samples: the slowest)", True),
    ("burst_s", "1000 new entries for a running agent → all SVIDs on the workload's stream", True),
    ("burst_probe_p50", "FetchX509SVID of another workload during that burst, p50", True),
    ("burst_probe_p99", "FetchX509SVID of another workload during that burst, p99", True),
    ("sync_1000_s", "agent start → 1000 authorized SVIDs on the workload's stream", True),
    ("fetch1_p50", "FetchX509SVID first response, 1 client, p50", True),
    ("fetch1_p99", "FetchX509SVID first response, 1 client, p99", True),
    ("fetch100_p50", "100 concurrent clients, p50", True),
    ("fetch100_p99", "100 concurrent clients, p99", True),
    ("fetch1000_p50", "1000 concurrent clients, p50", True),
    ("fetch1000_p99", "1000 concurrent clients, p99", True),
    ("jwt_rate", "FetchJWTSVID, 16 clients, a new audience each", False),
    ("mint_rate", "MintX509SVID on the admin API, 8 clients", False),
    ("create_rate", "entry creation, batches of 500 (10k entries)", False),
    ("restart10k_s", "server restart to healthy, 10k entries", True),
    ("create100k_rate", "entry creation up to 100k entries", False),
    ("restart100k_warm_s", "server restart to healthy, 100k entries, warm", True),
    ("restart100k_cold_s", "server restart to healthy, 100k entries, page cache dropped", True),
    ("list100k_s", "ListEntries of 100k entries, pages of 500", True),
    ("disk100k", "store on disk, 100k entries", True),
    ("rss_server_10k", "server RSS with 10k entries", True),
    ("rss_server_100k_start", "server RSS with 100k entries, just restarted", True),
    ("rss_server_100k", "server RSS with 100k entries (after listing them)", True),
    ("rss_idle_server", "RSS idle: server", True),
    ("rss_idle_agent", "RSS idle: agent", True),
    ("rss_agent_burst", "agent RSS with 1011 SVIDs, after the burst and 1000 concurrent clients", True),
]


def load(path):
    values, units = defaultdict(lambda: defaultdict(list)), {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 5:
                continue
            impl, _round, name, value, unit = parts
            values[name][impl].append(float(value))
            units[name] = unit
    return values, units


def fmt(x):
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def cell(samples, unit):
    if not samples:
        return "–"
    m = statistics.median(samples)
    text = f"{fmt(m)} {unit}"
    if len(samples) > 1:
        text += f" ({fmt(min(samples))}–{fmt(max(samples))})"
    return text


def ratio(spire, signet, lower_better):
    if not spire or not signet:
        return "–"
    a, b = statistics.median(spire), statistics.median(signet)
    if a <= 0 or b <= 0:
        return "–"
    return f"{(a / b if lower_better else b / a):.1f}×"


def main():
    values, units = load(sys.argv[1])
    sizes = sys.argv[2:]
    rows = list(MAIN)
    for n in sizes:
        rows.append((f"sync_{n}_s", f"scale: agent start → {n} SVIDs", True))
    for n in sizes:
        rows.append((f"jwt_{n}_rate", f"scale: FetchJWTSVID/s with {n} entries", False))
    for n in sizes:
        rows.append((f"rss_agent_{n}", f"scale: agent RSS with {n} SVIDs", True))
    print("| figure | SPIRE | Signet | Signet better by |")
    print("| --- | --- | --- | --- |")
    for name, label, lower in rows:
        if name not in values:
            continue
        spire, signet = values[name].get("spire", []), values[name].get("signet", [])
        unit = units[name]
        print(f"| {label} | {cell(spire, unit)} | {cell(signet, unit)} | {ratio(spire, signet, lower)} |")
    print()
    print("Medians over the rounds, (min–max) when more than one. \"Signet better by\" is SPIRE/Signet")
    print("for times and sizes, Signet/SPIRE for rates. SPIRE's 100k entries are loaded into its sqlite")
    print("file directly (its API takes over an hour for them), so it has no creation row there.")


if __name__ == "__main__":
    main()
