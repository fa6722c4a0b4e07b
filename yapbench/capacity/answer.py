"""The capacity answer in words: one line for the total, one per target of a fleet (terminal and report)."""

from __future__ import annotations

from ..metricdefs import GENERATOR_LAG_LIMIT_MS


def answer_lines(answer: dict) -> list[str]:
    lines = [one_line(answer)]
    for url, t in answer.get("per_target", {}).items():
        held = t["capacity_streams"] if t["capacity_streams"] is not None else "no level"
        lines.append(f"  {url}: {held} streams held every SLO; above it: {', '.join(t['broken_first']) or 'nothing'}")
    beside = answer.get("beside")
    if beside:
        lines.append(f"beside it, {beside['run_dir']}: " + one_line(beside["answer"]).removeprefix("capacity: "))
    return lines


def beside_answer(run_dir: str) -> dict:
    """--beside: another `yapbench capacity` run's answer (capacity.json), to be shown with this one's: typically
    back-to-back speech beside conversations on the same server. Raises ValueError naming the file."""
    import json
    from pathlib import Path

    from . import CAPACITY_JSON

    path = Path(run_dir) / CAPACITY_JSON
    try:
        answer = json.loads(path.read_text(encoding="utf-8"))
        one_line(answer)  # has what a line needs
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--beside {run_dir}: {path} is not a capacity answer ({exc})") from None
    answer.pop("beside", None)  # one level of comparison, not a chain
    return {"run_dir": str(run_dir), "answer": {k: v for k, v in answer.items() if k != "levels"}}


def one_line(answer: dict) -> str:
    cap, bad = answer["capacity"], answer["first_bad_users"]
    broke = ", ".join(answer["broken_first"]) or "nothing"
    unit = "conversations" if answer.get("conversation") else "streams"
    if answer["limit"] == "generator":
        return (f"capacity: the load generator was the limit at {bad} {unit} "
                f"(send lag p99 > {answer.get('generator_limit_ms', GENERATOR_LAG_LIMIT_MS):g} ms), not the server; "
                f"add Locust workers (--processes) and run again. Last level held by the server: {cap}")
    if cap is None:
        return f"capacity: even the first level ({bad} {unit}) broke: {broke}"
    held = f"{cap} real-time streams" if unit == "streams" else f"{cap} concurrent conversations"
    if answer["limit"] == "max_users":
        return f"capacity: at least {held}: every SLO held up to --max-users" + _in_streams(answer)
    return (f"capacity: {held} hold every SLO (resolution {answer['resolution']}); at {bad} {unit}: {broke}"
            + _in_streams(answer))


def _in_streams(answer: dict) -> str:
    """A conversation answer in streams: the connections (slots) it holds, and the streams of speech they carry."""
    if not answer.get("conversation"):
        return ""
    share = answer.get("speech_share")
    speech = "" if share is None else (f", about {answer['speech_streams']:g} of them speaking at once "
                                       f"(speech {100 * share:.0f} % of the time)")
    return f". In streams: {answer['capacity']} held open{speech}; --conversation {answer['conversation']}"
