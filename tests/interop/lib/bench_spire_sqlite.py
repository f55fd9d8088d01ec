"""Loads N registration entries straight into spire-server's sqlite datastore, for bench.sh's
100k group (creating them through SPIRE's API takes over an hour here).

    python3 bench_spire_sqlite.py <datastore.sqlite3> <N>

The file must hold exactly one entry, created through the API with the server since stopped:
it is copied N-1 times (new entry ID, SPIFFE ID .../<prefix>/<i>, created_at), with its
selectors, so every column is what SPIRE itself wrote. Registration-entry events are not
written: the server loads its entry cache from the entry table at start.
"""

import sqlite3
import sys
import uuid


def main() -> int:
    path, n = sys.argv[1], int(sys.argv[2])
    con = sqlite3.connect(path)
    cols = [r[1] for r in con.execute("PRAGMA table_info(registered_entries)")]
    rows = con.execute("SELECT * FROM registered_entries").fetchall()
    if len(rows) != 1:
        print(f"expected exactly one entry in {path}, found {len(rows)}", file=sys.stderr)
        return 1
    template = dict(zip(cols, rows[0]))
    sel_cols = [r[1] for r in con.execute("PRAGMA table_info(selectors)")]
    selectors = [
        dict(zip(sel_cols, r))
        for r in con.execute("SELECT * FROM selectors WHERE registered_entry_id = ?", (template["id"],))
    ]
    base = template["spiffe_id"].rsplit("/", 1)[0]
    entry_cols = [c for c in cols if c != "id"]
    sel_insert = [c for c in sel_cols if c != "id"]
    next_id = template["id"] + 1
    entries, sels = [], []
    for i in range(1, n):
        row = dict(template, id=next_id, entry_id=str(uuid.uuid4()), spiffe_id=f"{base}/{i}")
        entries.append([row["id"]] + [row[c] for c in entry_cols])
        for s in selectors:
            sels.append([dict(s, registered_entry_id=next_id)[c] for c in sel_insert])
        next_id += 1
    with con:
        con.executemany(
            f"INSERT INTO registered_entries (id, {', '.join(entry_cols)}) VALUES ({', '.join('?' * len(cols))})",
            entries,
        )
        con.executemany(
            f"INSERT INTO selectors ({', '.join(sel_insert)}) VALUES ({', '.join('?' * len(sel_insert))})",
            sels,
        )
    total = con.execute("SELECT COUNT(*) FROM registered_entries").fetchone()[0]
    print(f"{path}: {total} entries", file=sys.stderr)
    con.close()
    return 0 if total == n else 1


if __name__ == "__main__":
    sys.exit(main())
