"""The capacity answer in words: one line for the total, one per target of a fleet (terminal and report)."""

from __future__ import annotations


def answer_lines(answer: dict) -> list[str]:
    lines = [one_line(answer)]
    for url, t in answer.get("per_target", {}).items():
        held = t["capacity_streams"] if t["capacity_streams"] is not None else "no level"
        lines.append(f"  {url}: {held} streams held every SLO; above it: {', '.join(t['broken_first']) or 'nothing'}")
    return lines


def one_line(answer: dict) -> str:
    cap, bad = answer["capacity"], answer["first_bad_users"]
    broke = ", ".join(answer["broken_first"]) or "nothing"
    if answer["limit"] == "generator":
        return (f"capacity: the load generator was the limit at {bad} streams (send lag p99 > 10 ms), not the server; "
                f"add Locust workers (--processes) and run again. Last level held by the server: {cap}")
    if cap is None:
        return f"capacity: even the first level ({bad} streams) broke: {broke}"
    if answer["limit"] == "max_users":
        return f"capacity: at least {cap} real-time streams: every SLO held up to --max-users"
    return (f"capacity: {cap} real-time streams hold every SLO (resolution {answer['resolution']}); "
            f"at {bad} streams: {broke}")
